"""Tenant resources: observe Temporal, plan, apply, and mirror the result into status.

Every handler runs the same reconcile: create, resume (after an operator restart),
spec changes, the per-resource timer that mirrors progress, and deletion (behind the
finalizer). What to do is decided by ``tenant_plan``; this module only gathers its
inputs and carries out its answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from adx_core.contracts.billing import TENANT_UPGRADE_WORKFLOW, TenantUpgradeRequest
from adx_core.contracts.monitoring import PAUSE_SIGNAL, RESUME_SIGNAL
from adx_core.contracts.plans import Plan
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
    TASK_QUEUE,
    TENANT_DEPROVISIONING_WORKFLOW,
    TENANT_PROVISIONING_WORKFLOW,
    TenantAdmin,
    TenantCreationRequest,
    TenantDeprovisioningRequest,
    deprovisioning_workflow_id,
    provisioning_workflow_id,
)
from adx_operator import temporal_actions
from adx_operator.context import OperatorContext
from adx_operator.deletion import hold_until_released
from adx_operator.naming import ACTOR, GROUP, TENANTS, VERSION, upgrade_generation
from adx_operator.naming import upgrade_workflow_id as upgrade_id
from adx_operator.observe import RunState, WorkflowView, view
from adx_operator.status import changes, common_status, record_phase_change, remember, time_to_look
from adx_operator.tenant_plan import (
    IN_FLIGHT,
    Action,
    Do,
    Phase,
    TenantObserved,
    TenantState,
    derive,
    plan,
)
from adx_operator.tenant_spec import TenantSpec, provisioning_fields, read_tenant, spec_problem


async def observe(ctx: OperatorContext, tenant: TenantSpec, status: Any) -> TenantObserved:
    client = ctx.client
    recorded = _recorded_plan(status.get("plan"))
    provisioning = await view(client, provisioning_workflow_id(tenant.uid))
    if provisioning.state is RunState.ABSENT and _was_provisioned(status):
        # Temporal's retention removed the closed run: status remembers it completed,
        # and a tenant is never provisioned twice.
        provisioning = WorkflowView(
            provisioning.workflow_id,
            RunState.SUCCEEDED,
            result={"plan": recorded.value} if recorded else None,
        )
    settings = ctx.settings
    problem = spec_problem(
        tenant,
        settings.storage_provider.value,
        [kind.value for kind in settings.storage_kinds],
    )
    if tenant.deleting:
        removal = None
        if provisioning.state is RunState.SUCCEEDED:
            removal = await view(client, deprovisioning_workflow_id(tenant.uid))
        return TenantObserved(provisioning, deprovisioning=removal, spec_problem=problem)
    if provisioning.state is not RunState.SUCCEEDED:
        return TenantObserved(provisioning, recorded_plan=recorded, spec_problem=problem)
    return TenantObserved(
        provisioning,
        upgrade=await _upgrade(ctx, tenant, str(status.get("workflowId") or "")),
        monitoring_paused=await temporal_actions.monitoring_paused(
            client, tenant.uid, ctx.pacing.query_seconds
        ),
        recorded_plan=recorded,
        spec_problem=problem,
    )


async def _upgrade(ctx: OperatorContext, tenant: TenantSpec, named: str) -> WorkflowView | None:
    """This generation's plan change if there is one, else the one status last named."""
    current = await view(ctx.client, upgrade_id(tenant.uid, tenant.generation))
    if current.state is not RunState.ABSENT:
        return current
    if named and upgrade_generation(named, tenant.uid) is not None:
        return await view(ctx.client, named)
    return None


def _was_provisioned(status: Any) -> bool:
    conditions = status.get("conditions") or []
    return any(
        isinstance(item, dict) and (item.get("type"), item.get("status")) == ("Provisioned", "True")
        for item in conditions
    )


def _recorded_plan(value: object) -> Plan | None:
    try:
        return Plan(str(value)) if value else None
    except ValueError:
        return None


async def apply(ctx: OperatorContext, tenant: TenantSpec, action: Action) -> bool:
    """Carry out ``action``; ``True`` when Temporal's state changed (look again)."""
    client = ctx.client
    queue = ctx.settings.task_queue(TASK_QUEUE)
    generation = action.generation or tenant.generation
    if action.do is Do.START_PROVISIONING:
        await temporal_actions.start(
            client,
            TENANT_PROVISIONING_WORKFLOW,
            TenantCreationRequest(
                tenant_id=tenant.uid,
                slug=tenant.slug,
                display_name=tenant.display_name,
                plan=tenant.plan,
                admin=TenantAdmin(email=tenant.admin_email, name=tenant.admin_name),
                requested_by=ACTOR,
                quotas=tenant.quotas,
                monitoring_interval_seconds=ctx.settings.monitoring_interval_seconds,
            ),
            workflow_id=provisioning_workflow_id(tenant.uid),
            task_queue=queue,
            owner_tenant_id=PLATFORM_TENANT_ID,
            memo=temporal_actions.memo_for(
                tenant.uid, generation, "Tenant", tenant.uid, provisioning_fields(tenant)
            ),
            # A failed attempt may be followed by one for a newer generation; a
            # completed one never runs twice.
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
        return True
    if action.do is Do.START_UPGRADE:
        assert action.plan is not None
        await temporal_actions.start(
            client,
            TENANT_UPGRADE_WORKFLOW,
            TenantUpgradeRequest(tenant_id=tenant.uid, target_plan=action.plan, requested_by=ACTOR),
            workflow_id=upgrade_id(tenant.uid, generation),
            task_queue=queue,
            # The tenant's own operation: its admins see the plan change in their list.
            owner_tenant_id=tenant.uid,
            memo=temporal_actions.memo_for(tenant.uid, generation, "Tenant", tenant.uid),
            reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        return True
    if action.do is Do.START_DEPROVISIONING:
        await temporal_actions.start(
            client,
            TENANT_DEPROVISIONING_WORKFLOW,
            TenantDeprovisioningRequest(tenant_id=tenant.uid, requested_by=ACTOR),
            workflow_id=deprovisioning_workflow_id(tenant.uid),
            task_queue=queue,
            owner_tenant_id=PLATFORM_TENANT_ID,
            memo=temporal_actions.memo_for(tenant.uid, generation, "Tenant", tenant.uid),
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
        return True
    if action.do in (Do.PAUSE_MONITORING, Do.RESUME_MONITORING):
        signal = PAUSE_SIGNAL if action.do is Do.PAUSE_MONITORING else RESUME_SIGNAL
        await temporal_actions.signal_monitoring(client, tenant.uid, signal)
        return False
    if action.do is Do.CANCEL_PROVISIONING:
        await temporal_actions.cancel(client, provisioning_workflow_id(tenant.uid), None)
        return True
    return False


def tenant_status(tenant: TenantSpec, state: TenantState, previous: Any) -> dict[str, Any]:
    """The whole status this look shows (``None``: a field to remove)."""
    wanted = common_status(
        previous,
        phase=state.phase.value,
        generation=tenant.generation,
        workflow=state.workflow,
        failure=state.failure,
        conditions=state.conditions,
    )
    wanted["tenantId"] = tenant.uid
    wanted["plan"] = state.plan.value if state.plan else previous.get("plan")
    wanted["monitoringPaused"] = state.monitoring_paused
    return wanted


async def reconcile(
    ctx: OperatorContext,
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: Mapping[str, Any],
    patch: kopf.Patch,
) -> tuple[Action, dict[str, Any]]:
    """One look: the action taken and the status it shows (written into ``patch``)."""
    tenant = read_tenant(meta, spec)
    try:
        observed = await observe(ctx, tenant, status)
        action = plan(tenant, observed)
        if await apply(ctx, tenant, action):
            observed = await observe(ctx, tenant, status)
    except RPCError as err:
        raise kopf.TemporaryError(
            f"Temporal: {err.message}", delay=ctx.pacing.poll_seconds * 5
        ) from err
    state = derive(tenant, observed)
    wanted = tenant_status(tenant, state, status)
    diff = changes(status, wanted)
    if diff:
        patch.status.update(diff)
    record_phase_change(
        body, status.get("phase"), state.phase.value, state.failure, state.phase is Phase.FAILED
    )
    return action, wanted


async def _closes_soon(ctx: OperatorContext, wanted: Mapping[str, Any]) -> bool:
    workflow_id, run_id = wanted.get("workflowId"), wanted.get("runId")
    if not (workflow_id and run_id):
        return False
    return await temporal_actions.wait_for_close(
        ctx.client, str(workflow_id), str(run_id), ctx.pacing.poll_seconds
    )


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    resource = (GROUP, VERSION, TENANTS)

    @kopf.on.resume(*resource, id="tenant_changed", registry=registry)
    @kopf.on.create(*resource, id="tenant_changed", registry=registry)
    @kopf.on.update(*resource, field="spec", id="tenant_changed", registry=registry)
    async def tenant_changed(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        if meta.get("deletionTimestamp"):
            return  # the delete handler owns a resource on its way out
        action, wanted = await reconcile(
            ctx, body=body, meta=meta, spec=spec, status=status, patch=patch
        )
        if action.do in IN_FLIGHT and await _closes_soon(ctx, wanted):
            # A short workflow (provisioning takes well under a second) shows its end in
            # this handler's write instead of at the timer's next look.
            shown = {**status, **(patch.get("status") or {})}
            action, wanted = await reconcile(
                ctx, body=body, meta=meta, spec=spec, status=shown, patch=patch
            )
        settled, waiting = action.do is Do.NOTHING, action.do in IN_FLIGHT
        remember(memo, settled, meta.get("generation"), wanted, waiting)

    @kopf.timer(
        *resource,
        interval=ctx.pacing.poll_seconds,
        # The create handler takes a new resource's first look; a timer firing at the same
        # moment would write the same status and announce the same phase twice.
        initial_delay=ctx.pacing.poll_seconds,
        id="tenant_mirror",
        registry=registry,
    )
    async def tenant_mirror(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        if not await time_to_look(ctx, memo, meta, status):
            return
        action, wanted = await reconcile(
            ctx, body=body, meta=meta, spec=spec, status=status, patch=patch
        )
        settled, waiting = action.do is Do.NOTHING, action.do in IN_FLIGHT
        remember(memo, settled, meta.get("generation"), wanted, waiting)

    @kopf.on.delete(*resource, id="tenant_deleted", registry=registry)
    async def tenant_deleted(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        async def attempt(shown: Mapping[str, Any]) -> bool:
            action, _ = await reconcile(
                ctx, body=body, meta=meta, spec=spec, status=shown, patch=patch
            )
            return action.do is Do.RELEASE

        # The finalizer stays until deprovisioning has completed.
        await hold_until_released(attempt, status, patch, ctx.pacing, "deprovisioning")
