"""StorageMigration resources: start file_migration_workflow for the referenced Tenant,
mirror its progress into status, and cancel it (which rolls it back) when the resource
is deleted while it runs.

The referenced Tenant is found in a kopf index of Tenants (namespace and name to the
tenant's id and phase), kept from the watch stream the operator already has: no extra
reads of the API server per reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from adx_core.contracts.storage import (
    FILE_MIGRATION_WORKFLOW,
    FILES_TASK_QUEUE,
    migration_workflow_id,
)
from adx_operator import temporal_actions
from adx_operator.context import OperatorContext
from adx_operator.deletion import hold_until_released
from adx_operator.migration_plan import (
    IN_FLIGHT,
    Do,
    MigrationObserved,
    MigrationSpec,
    MigrationState,
    Phase,
    TenantRef,
    derive,
    plan,
    read_migration,
)
from adx_operator.naming import GROUP, MIGRATIONS, TENANTS, VERSION
from adx_operator.observe import Failure, RunState, WorkflowView, absent, view
from adx_operator.status import changes, common_status, record_phase_change, remember, time_to_look

TenantIndex = kopf.Index[tuple[str, str], TenantRef]


def tenant_of(index: TenantIndex, migration: MigrationSpec) -> TenantRef | None:
    store = index.get((migration.namespace, migration.tenant_name))
    return next(iter(store), None) if store is not None else None


_ENDED = {
    Phase.SUCCEEDED.value: RunState.SUCCEEDED,
    Phase.CANCELLED.value: RunState.CANCELLED,
    Phase.FAILED.value: RunState.FAILED,
    Phase.ROLLED_BACK.value: RunState.FAILED,
}


def remembered(workflow_id: str, run_id: str, status: Any) -> WorkflowView:
    """A run Temporal no longer has, as status recorded its end; never a reason to start
    it again."""
    state = _ENDED.get(str(status.get("phase")))
    if state is None:
        return absent(workflow_id)
    failure = status.get("failure") or {}
    return WorkflowView(
        workflow_id,
        state,
        run_id=run_id,
        step="rolled_back" if status.get("phase") == Phase.ROLLED_BACK.value else "",
        percent=100 if state is RunState.SUCCEEDED else 0,
        failure=Failure(
            str(failure.get("step", "")),
            str(failure.get("reason", "")),
            str(failure.get("message", "")),
        )
        if failure
        else None,
    )


def spec_problem(ctx: OperatorContext, migration: MigrationSpec) -> str | None:
    configured = {kind.value for kind in ctx.settings.storage_kinds}
    named = [migration.target, *migration.fallback_targets]
    if migration.source:
        named.append(migration.source)
    missing = sorted(set(named) - configured)
    if missing:
        return (
            f"not configured in this deployment: {', '.join(missing)} "
            f"(configured: {', '.join(sorted(configured))})"
        )
    return None


async def observe(
    ctx: OperatorContext, migration: MigrationSpec, tenant: TenantRef | None, status: Any
) -> MigrationObserved:
    problem = spec_problem(ctx, migration)
    tenant_id = (tenant.tenant_id if tenant else None) or status.get("tenantId")
    if not tenant_id:
        return MigrationObserved(tenant, absent(""), spec_problem=problem)
    workflow_id = migration_workflow_id(str(tenant_id))
    run_id = status.get("runId") if status.get("workflowId") == workflow_id else None
    if run_id:
        run = await view(ctx.client, workflow_id, run_id)
        if run.state is RunState.ABSENT:
            # Temporal's retention removed the closed run; status still says how it ended.
            run = remembered(workflow_id, run_id, status)
        return MigrationObserved(tenant, run, None, problem)
    # No run recorded: the latest run under the tenant's migration id is ours only if its
    # memo names this resource (the operator may have stopped between start and status).
    latest = await view(ctx.client, workflow_id)
    if latest.state is RunState.ABSENT or latest.uid == migration.uid:
        return MigrationObserved(tenant, latest, None, problem)
    blocked_by = latest.workflow_id if latest.state is RunState.RUNNING else None
    return MigrationObserved(tenant, absent(workflow_id), blocked_by, problem)


async def apply(
    ctx: OperatorContext, migration: MigrationSpec, action: Do, observed: MigrationObserved
) -> bool:
    workflow = observed.workflow
    if action is Do.START:
        tenant = observed.tenant
        assert tenant is not None
        assert tenant.tenant_id is not None
        await temporal_actions.start(
            ctx.client,
            FILE_MIGRATION_WORKFLOW,
            migration.request(tenant.tenant_id),
            workflow_id=migration_workflow_id(tenant.tenant_id),
            task_queue=ctx.settings.task_queue(FILES_TASK_QUEUE),
            owner_tenant_id=tenant.tenant_id,
            memo=temporal_actions.memo_for(
                migration.uid, migration.generation, "StorageMigration", tenant.tenant_id
            ),
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        # USE_EXISTING joins whatever runs under the id: if that is another resource's
        # migration (it started in between), this one waits for it to finish.
        return True
    if action is Do.CANCEL:
        await temporal_actions.cancel(ctx.client, workflow.workflow_id, workflow.run_id)
        return True
    return False


def migration_status(
    migration: MigrationSpec,
    state: MigrationState,
    workflow: WorkflowView,
    tenant_id: str | None,
    previous: Any,
) -> dict[str, Any]:
    wanted = common_status(
        previous,
        phase=state.phase.value,
        generation=migration.generation,
        workflow=workflow if workflow.state is not RunState.ABSENT else None,
        failure=state.failure,
        conditions=state.conditions,
    )
    wanted["tenantId"] = tenant_id or previous.get("tenantId")
    if state.progress:
        wanted["progress"] = {**(previous.get("progress") or {}), **state.progress}
    return wanted


async def reconcile(
    ctx: OperatorContext,
    index: TenantIndex,
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: Mapping[str, Any],
    patch: kopf.Patch,
) -> tuple[Do, dict[str, Any]]:
    """One look: the action taken and the status it shows (written into ``patch``)."""
    migration = read_migration(meta, spec)
    tenant = tenant_of(index, migration)
    try:
        observed = await observe(ctx, migration, tenant, status)
        action = plan(migration, observed)
        if await apply(ctx, migration, action, observed):
            observed = await _observe_after(ctx, migration, tenant, status)
    except RPCError as err:
        raise kopf.TemporaryError(
            f"Temporal: {err.message}", delay=ctx.pacing.poll_seconds * 5
        ) from err
    state = derive(migration, observed)
    tenant_id = tenant.tenant_id if tenant else None
    wanted = migration_status(migration, state, observed.workflow, tenant_id, status)
    diff = changes(status, wanted)
    if diff:
        patch.status.update(diff)
    record_phase_change(
        body,
        status.get("phase"),
        state.phase.value,
        state.failure,
        state.phase in (Phase.FAILED, Phase.ROLLED_BACK),
    )
    return action, wanted


async def _observe_after(
    ctx: OperatorContext, migration: MigrationSpec, tenant: TenantRef | None, status: Any
) -> MigrationObserved:
    # Right after a start, status has no run id yet: find the run by its memo.
    return await observe(ctx, migration, tenant, {**status, "runId": None})


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    resource = (GROUP, VERSION, MIGRATIONS)

    @kopf.index(GROUP, VERSION, TENANTS, id="tenant_refs", registry=registry)
    def tenant_refs(
        namespace: str | None, name: str | None, status: kopf.Status, **_: Any
    ) -> dict[tuple[str, str], TenantRef]:
        return {
            (namespace or "", name or ""): TenantRef(
                tenant_id=status.get("tenantId"), phase=status.get("phase")
            )
        }

    @kopf.on.resume(*resource, id="migration_changed", registry=registry)
    @kopf.on.create(*resource, id="migration_changed", registry=registry)
    async def migration_changed(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **kwargs: Any,
    ) -> None:
        if meta.get("deletionTimestamp"):
            return
        action, wanted = await reconcile(
            ctx, _index(kwargs), body=body, meta=meta, spec=spec, status=status, patch=patch
        )
        remember(memo, action is Do.NOTHING, meta.get("generation"), wanted, action in IN_FLIGHT)

    @kopf.timer(
        *resource,
        interval=ctx.pacing.poll_seconds,
        # As for Tenants: the create handler takes the first look alone.
        initial_delay=ctx.pacing.poll_seconds,
        id="migration_mirror",
        registry=registry,
    )
    async def migration_mirror(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **kwargs: Any,
    ) -> None:
        if not await time_to_look(ctx, memo, meta, status):
            return
        action, wanted = await reconcile(
            ctx, _index(kwargs), body=body, meta=meta, spec=spec, status=status, patch=patch
        )
        remember(memo, action is Do.NOTHING, meta.get("generation"), wanted, action in IN_FLIGHT)

    @kopf.on.delete(*resource, id="migration_deleted", registry=registry)
    async def migration_deleted(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        **kwargs: Any,
    ) -> None:
        index = _index(kwargs)

        async def attempt(shown: Mapping[str, Any]) -> bool:
            action, _ = await reconcile(
                ctx, index, body=body, meta=meta, spec=spec, status=shown, patch=patch
            )
            return action is Do.RELEASE

        # The finalizer stays until the cancelled migration has rolled back.
        await hold_until_released(attempt, status, patch, ctx.pacing, "the rollback")


def _index(kwargs: dict[str, Any]) -> TenantIndex:
    # kopf passes every index to every handler by the index's name; its handler protocols
    # cannot name ours, hence the lookup.
    index: TenantIndex = kwargs["tenant_refs"]
    return index
