"""Planning for a Tenant: pure functions from what is asked and what is observed to the
status to show and the one next step to take.

Nothing here does I/O, so every case is a unit test, and the code that applies a plan
(``tenant_handlers``) stays a thin layer, the way temporal-worker-controller keeps its
planner apart from its executor.

The view is level-based: the phase is derived each time from the workflows Temporal
knows under ids derived from the resource, never from a remembered event. After a
restart the operator re-derives every Tenant's state the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from adx_core.contracts.plans import Plan
from adx_operator.conditions import Condition, truth
from adx_operator.observe import Failure, RunState, WorkflowView
from adx_operator.tenant_spec import TenantSpec, provisioning_fields


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    UPGRADING = "Upgrading"
    FAILED = "Failed"
    DELETING = "Deleting"


@dataclass(frozen=True)
class TenantObserved:
    provisioning: WorkflowView
    # The plan-change attempt status names, or the one for the current generation.
    upgrade: WorkflowView | None = None
    deprovisioning: WorkflowView | None = None
    # Whether the tenant's monitoring workflow says it is paused; None: no answer.
    monitoring_paused: bool | None = None
    # The plan status last recorded as in effect.
    recorded_plan: Plan | None = None
    # What the spec asks that this deployment cannot do (see tenant_spec.spec_problem).
    spec_problem: str | None = None


class Do(StrEnum):
    NOTHING = "nothing"  # settled: Ready, or Failed until the spec changes
    WAIT = "wait"  # a workflow is running: look again soon
    START_PROVISIONING = "start-provisioning"
    START_UPGRADE = "start-upgrade"
    PAUSE_MONITORING = "pause-monitoring"
    RESUME_MONITORING = "resume-monitoring"
    CANCEL_PROVISIONING = "cancel-provisioning"
    START_DEPROVISIONING = "start-deprovisioning"
    RELEASE = "release"  # clean-up done: the finalizer may go


# After these a workflow is in flight: worth waiting on its close.
IN_FLIGHT = frozenset({Do.WAIT, Do.START_PROVISIONING, Do.START_UPGRADE, Do.START_DEPROVISIONING})


@dataclass(frozen=True)
class Action:
    do: Do
    # START_*: the generation the new attempt belongs to; START_UPGRADE: the plan.
    generation: int | None = None
    plan: Plan | None = None


@dataclass(frozen=True)
class TenantState:
    phase: Phase
    plan: Plan | None
    # The workflow whose progress status mirrors now.
    workflow: WorkflowView | None
    failure: Failure | None
    conditions: tuple[Condition, ...] = field(default_factory=tuple)
    monitoring_paused: bool | None = None


def effective_plan(observed: TenantObserved) -> Plan | None:
    """The plan in force: the last completed change, else what status recorded, else what
    provisioning set up."""
    upgrade = observed.upgrade
    if upgrade is not None and upgrade.state is RunState.SUCCEEDED and upgrade.result:
        return _plan(upgrade.result.get("plan"))
    if observed.recorded_plan is not None:
        return observed.recorded_plan
    provisioning = observed.provisioning
    if provisioning.state is RunState.SUCCEEDED and provisioning.result:
        return _plan(provisioning.result.get("plan"))
    return None


def _plan(value: object) -> Plan | None:
    try:
        return Plan(str(value))
    except ValueError:
        return None


def _retry_due(view: WorkflowView, spec: TenantSpec) -> bool:
    """A failed attempt is retried only for a newer generation: editing the spec is how a
    user says "try again", and a repeated event for the same one must not loop. A run
    without the operator's memo (started through the API under the same id) is never
    retried by the operator: it cannot tell which generation it answered."""
    return view.generation is not None and spec.generation > view.generation


def plan(spec: TenantSpec, observed: TenantObserved) -> Action:
    """The one next step for this Tenant."""
    provisioning = observed.provisioning
    if spec.deleting:
        return _plan_deletion(spec, observed)
    if observed.spec_problem is not None and provisioning.state is RunState.ABSENT:
        return Action(Do.NOTHING)
    if provisioning.state is RunState.ABSENT:
        return Action(Do.START_PROVISIONING, generation=spec.generation)
    if provisioning.state is RunState.RUNNING:
        return Action(Do.WAIT)
    if provisioning.state in (RunState.FAILED, RunState.CANCELLED):
        if _retry_due(provisioning, spec) and observed.spec_problem is None:
            return Action(Do.START_PROVISIONING, generation=spec.generation)
        return Action(Do.NOTHING)
    current = effective_plan(observed)
    upgrade = observed.upgrade
    if current is not None and spec.plan != current:
        if upgrade is None or upgrade.state is RunState.ABSENT:
            return Action(Do.START_UPGRADE, generation=spec.generation, plan=spec.plan)
        if upgrade.state is RunState.RUNNING:
            return Action(Do.WAIT)
        if upgrade.state is RunState.SUCCEEDED or _retry_due(upgrade, spec):
            # Succeeded to another plan than the spec now names, or failed for an
            # older generation: a new attempt for this one.
            return Action(Do.START_UPGRADE, generation=spec.generation, plan=spec.plan)
        return Action(Do.NOTHING)
    if spec.paused and observed.monitoring_paused is not True:
        return Action(Do.PAUSE_MONITORING)
    if not spec.paused and observed.monitoring_paused is True:
        return Action(Do.RESUME_MONITORING)
    return Action(Do.NOTHING)


def _plan_deletion(spec: TenantSpec, observed: TenantObserved) -> Action:
    provisioning = observed.provisioning
    if provisioning.state is RunState.RUNNING:
        # Its saga undoes what it did; then there is nothing to deprovision.
        return Action(Do.CANCEL_PROVISIONING)
    if provisioning.state is not RunState.SUCCEEDED:
        return Action(Do.RELEASE)
    removal = observed.deprovisioning
    if removal is None or removal.state is RunState.ABSENT:
        return Action(Do.START_DEPROVISIONING, generation=spec.generation)
    if removal.state is RunState.SUCCEEDED:
        return Action(Do.RELEASE)
    if removal.state is RunState.RUNNING:
        return Action(Do.WAIT)
    # Failed or cancelled: shown as Failed with the step and reason. An edit of the spec
    # (a new generation) tries again; a loop of failing runs would help nobody.
    if _retry_due(removal, spec):
        return Action(Do.START_DEPROVISIONING, generation=spec.generation)
    return Action(Do.NOTHING)


def derive(spec: TenantSpec, observed: TenantObserved) -> TenantState:
    """The status to show: phase, the workflow mirrored, the failure and conditions."""
    state = _derive_phase(spec, observed)
    plan_now = effective_plan(observed)
    provisioned = observed.provisioning.state is RunState.SUCCEEDED
    plan_applied = provisioned and plan_now == spec.plan
    conditions = [
        Condition(
            "Ready",
            truth(state.phase is Phase.READY),
            state.phase.value if state.phase is not Phase.READY else "Ready",
            _ready_message(state, spec),
        ),
        Condition(
            "Provisioned",
            truth(provisioned),
            _provisioned_reason(observed.provisioning.state),
        ),
        Condition(
            "PlanApplied",
            truth(plan_applied),
            "PlanApplied" if plan_applied else _plan_reason(observed, provisioned),
            f"{plan_now.value} plan in effect" if plan_now else "",
        ),
        _spec_applied(spec, observed.provisioning),
        Condition(
            "MonitoringPaused",
            truth(observed.monitoring_paused if provisioned else None),
            _monitoring_reason(spec, observed.monitoring_paused, provisioned),
        ),
    ]
    return TenantState(
        phase=state.phase,
        plan=plan_now,
        workflow=state.workflow,
        failure=state.failure,
        conditions=tuple(conditions),
        monitoring_paused=observed.monitoring_paused,
    )


def _derive_phase(spec: TenantSpec, observed: TenantObserved) -> TenantState:
    provisioning = observed.provisioning
    if spec.deleting:
        removal = observed.deprovisioning
        if removal is not None and removal.state in (RunState.FAILED, RunState.CANCELLED):
            return TenantState(Phase.FAILED, None, removal, removal.failure)
        shown = removal if removal is not None and removal.state is not RunState.ABSENT else None
        return TenantState(Phase.DELETING, None, shown or provisioning, None)
    if observed.spec_problem is not None and provisioning.state is not RunState.SUCCEEDED:
        problem = Failure("validate", "InvalidSpec", observed.spec_problem)
        return TenantState(Phase.FAILED, None, None, problem)
    if provisioning.state is RunState.ABSENT:
        return TenantState(Phase.PENDING, None, None, None)
    if provisioning.state is RunState.RUNNING:
        return TenantState(Phase.PROVISIONING, None, provisioning, None)
    if provisioning.state in (RunState.FAILED, RunState.CANCELLED):
        return TenantState(Phase.FAILED, None, provisioning, provisioning.failure)
    upgrade = observed.upgrade
    if effective_plan(observed) not in (None, spec.plan) and upgrade is not None:
        if upgrade.state is RunState.RUNNING:
            return TenantState(Phase.UPGRADING, None, upgrade, None)
        if upgrade.state in (RunState.FAILED, RunState.CANCELLED) and not _retry_due(upgrade, spec):
            return TenantState(Phase.FAILED, None, upgrade, upgrade.failure)
        return TenantState(Phase.UPGRADING, None, upgrade, None)
    if effective_plan(observed) not in (None, spec.plan):
        return TenantState(Phase.UPGRADING, None, None, None)
    shown = upgrade if upgrade is not None and upgrade.state is not RunState.ABSENT else None
    return TenantState(Phase.READY, None, shown or provisioning, None)


def _spec_applied(spec: TenantSpec, provisioning: WorkflowView) -> Condition:
    """displayName, admin and quotas take effect when the tenant is provisioned; no
    workflow changes them afterwards, so an edit later is reported rather than ignored."""
    if provisioning.state is not RunState.SUCCEEDED:
        return Condition("SpecApplied", "Unknown", "NotProvisioned")
    if provisioning.requested is None:
        return Condition("SpecApplied", "Unknown", "NotRecorded")
    wanted = provisioning_fields(spec)
    changed = sorted(k for k, v in wanted.items() if provisioning.requested.get(k) != v)
    if not changed:
        return Condition("SpecApplied", "True", "Applied")
    return Condition(
        "SpecApplied",
        "False",
        "ProvisioningOnly",
        f"{', '.join(changed)} take effect at provisioning and were changed since; "
        "they stay as provisioned (plan and paused apply at any time)",
    )


def _ready_message(state: TenantState, spec: TenantSpec) -> str:
    if state.failure is not None:
        return f"{state.failure.step}: {state.failure.message}"
    if state.phase is Phase.READY:
        return f"tenant {spec.slug} is active"
    if state.workflow is not None and state.workflow.step:
        return f"{state.workflow.workflow_id}: {state.workflow.step}"
    return ""


def _provisioned_reason(run: RunState) -> str:
    return {
        RunState.ABSENT: "NotStarted",
        RunState.RUNNING: "InProgress",
        RunState.SUCCEEDED: "Provisioned",
        RunState.FAILED: "ProvisioningFailed",
        RunState.CANCELLED: "ProvisioningCancelled",
    }[run]


def _plan_reason(observed: TenantObserved, provisioned: bool) -> str:
    if not provisioned:
        return "NotProvisioned"
    upgrade = observed.upgrade
    if upgrade is None or upgrade.state is RunState.ABSENT:
        return "UpgradePending"
    if upgrade.state is RunState.RUNNING:
        return "UpgradeInProgress"
    if upgrade.state in (RunState.FAILED, RunState.CANCELLED):
        return "UpgradeFailed"
    return "UpgradePending"


def _monitoring_reason(spec: TenantSpec, paused: bool | None, provisioned: bool) -> str:
    if not provisioned:
        return "NotProvisioned"
    if paused is None:
        return "NoAnswer"
    if paused != spec.paused:
        return "Pausing" if spec.paused else "Resuming"
    return "Paused" if paused else "Running"
