"""Planning for a StorageMigration: pure functions, as for a Tenant (see tenant_plan).

A migration's spec is immutable (a CEL rule), so there is no "new generation retries":
a failed or rolled-back migration stays as it ended, and a new StorageMigration tries
again. Deleting one that is still running cancels it, which rolls it back; the
finalizer goes once the workflow has ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from adx_core.contracts.storage import FileMigrationRequest
from adx_operator.conditions import Condition, truth
from adx_operator.observe import Failure, RunState, WorkflowView


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    ROLLED_BACK = "RolledBack"


@dataclass(frozen=True)
class MigrationSpec:
    uid: str
    name: str
    namespace: str
    generation: int
    deleting: bool
    tenant_name: str
    target: str
    source: str = ""
    fallback_targets: tuple[str, ...] = ()
    prefix: str = ""
    batch_size: int = 100
    delete_source: bool = False

    def request(self, tenant_id: str) -> FileMigrationRequest:
        return FileMigrationRequest(
            tenant_id=tenant_id,
            target=self.target,
            fallback_targets=list(self.fallback_targets),
            source=self.source,
            prefix=self.prefix,
            batch_size=self.batch_size,
            delete_source=self.delete_source,
            # The resource's uid: the migration's row and its audit entries name it.
            migration_id=self.uid,
        )


def read_migration(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> MigrationSpec:
    return MigrationSpec(
        uid=str(meta["uid"]),
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or ""),
        generation=int(meta.get("generation") or 1),
        deleting=bool(meta.get("deletionTimestamp")),
        tenant_name=str((spec.get("tenantRef") or {}).get("name", "")),
        target=str(spec.get("target", "")),
        source=str(spec.get("source") or ""),
        fallback_targets=tuple(str(t) for t in spec.get("fallbackTargets") or ()),
        prefix=str(spec.get("prefix") or ""),
        batch_size=int(spec.get("batchSize") or 100),
        delete_source=bool(spec.get("deleteSource", False)),
    )


@dataclass(frozen=True)
class TenantRef:
    """The referenced Tenant as the operator's index saw it."""

    tenant_id: str | None
    phase: str | None


@dataclass(frozen=True)
class MigrationObserved:
    tenant: TenantRef | None
    # This resource's own workflow run (memo uid is ours), or absent.
    workflow: WorkflowView
    # Another migration of the same tenant is running (one at a time per tenant).
    blocked_by: str | None = None
    spec_problem: str | None = None


class Do(StrEnum):
    NOTHING = "nothing"
    WAIT = "wait"
    START = "start"
    CANCEL = "cancel"
    RELEASE = "release"


# After these the migration's workflow is in flight.
IN_FLIGHT = frozenset({Do.START, Do.WAIT})


@dataclass(frozen=True)
class MigrationState:
    phase: Phase
    failure: Failure | None
    conditions: tuple[Condition, ...] = field(default_factory=tuple)
    progress: dict[str, int] = field(default_factory=dict)


def plan(spec: MigrationSpec, observed: MigrationObserved) -> Do:
    run = observed.workflow.state
    if spec.deleting:
        if run is RunState.RUNNING:
            return Do.CANCEL
        return Do.RELEASE
    if run is RunState.RUNNING:
        return Do.WAIT
    if run is not RunState.ABSENT:
        return Do.NOTHING
    if observed.spec_problem is not None:
        return Do.NOTHING
    tenant = observed.tenant
    if tenant is None or tenant.tenant_id is None or tenant.phase != "Ready":
        return Do.WAIT
    if observed.blocked_by is not None:
        return Do.WAIT
    return Do.START


def derive(spec: MigrationSpec, observed: MigrationObserved) -> MigrationState:
    phase, failure, reason, message = _phase(spec, observed)
    view = observed.workflow
    finished = phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.ROLLED_BACK)
    conditions = (
        Condition("Ready", truth(phase is Phase.SUCCEEDED), reason, message if not failure else ""),
        Condition(
            "TenantReady",
            truth(_tenant_ready(observed) if observed.tenant is not None else False),
            "TenantReady" if _tenant_ready(observed) else "TenantNotReady",
            f"tenant {spec.tenant_name}"
            + (f" is {observed.tenant.phase}" if observed.tenant and observed.tenant.phase else "")
            if not _tenant_ready(observed)
            else "",
        ),
        Condition(
            "Finished",
            truth(finished),
            phase.value,
            f"{failure.step}: {failure.message}" if failure else "",
        ),
    )
    return MigrationState(phase, failure, conditions, _progress(view))


def _tenant_ready(observed: MigrationObserved) -> bool:
    tenant = observed.tenant
    return tenant is not None and tenant.tenant_id is not None and tenant.phase == "Ready"


def _phase(
    spec: MigrationSpec, observed: MigrationObserved
) -> tuple[Phase, Failure | None, str, str]:
    view = observed.workflow
    if view.state is RunState.RUNNING:
        return Phase.RUNNING, None, "Running", f"{view.step or 'starting'}: {view.percent}%"
    if view.state is RunState.SUCCEEDED:
        return Phase.SUCCEEDED, None, "Succeeded", f"files moved to {spec.target}"
    if view.state is RunState.CANCELLED:
        return Phase.CANCELLED, view.failure, "Cancelled", "cancelled and rolled back"
    if view.state is RunState.FAILED:
        # The workflow's last step says whether its rollback completed.
        if view.step == "rolled_back":
            return Phase.ROLLED_BACK, view.failure, "RolledBack", "failed and rolled back"
        return Phase.FAILED, view.failure, "Failed", "failed"
    if observed.spec_problem is not None:
        problem = Failure("validate", "InvalidSpec", observed.spec_problem)
        return Phase.FAILED, problem, "InvalidSpec", observed.spec_problem
    if not _tenant_ready(observed):
        return Phase.PENDING, None, "WaitingForTenant", f"tenant {spec.tenant_name} is not Ready"
    if observed.blocked_by is not None:
        return (
            Phase.PENDING,
            None,
            "WaitingForMigration",
            f"another migration of this tenant is running ({observed.blocked_by})",
        )
    return Phase.PENDING, None, "Starting", ""


def _progress(view: WorkflowView) -> dict[str, int]:
    counters = view.counters
    keys = {
        "filesDone": "files_done",
        "filesTotal": "files_total",
        "bytesDone": "bytes_done",
        "bytesTotal": "bytes_total",
    }
    return {name: int(counters[key]) for name, key in keys.items() if key in counters}
