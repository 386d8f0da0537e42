"""The operator's pure planning: every case of what a Tenant or StorageMigration needs next,
and the status it shows, without Kubernetes or Temporal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import kopf
import pytest
import yaml

from adx_core.contracts.plans import Plan
from adx_operator import migration_plan, tenant_plan
from adx_operator.conditions import Condition, merge
from adx_operator.migration_plan import MigrationObserved, TenantRef, read_migration
from adx_operator.naming import upgrade_generation, upgrade_workflow_id
from adx_operator.observe import Failure, RunState, WorkflowView
from adx_operator.status import changes, is_settled, remember
from adx_operator.tenant_plan import Do, Phase, TenantObserved
from adx_operator.tenant_spec import provisioning_fields, read_tenant, spec_problem
from tests.support.crds import load_crd, schema_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UID = "7d4b8c9e-1111-4222-8333-444455556666"


def tenant(generation: int = 1, deleting: bool = False, **spec: object):  # type: ignore[no-untyped-def]
    meta = {"uid": UID, "name": "acme", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T10:00:00Z"
    body = {
        "displayName": "Acme",
        "plan": "free",
        "admin": {"email": "ada@acme.test", "name": "Ada"},
        **spec,
    }
    return read_tenant(meta, body)


def run(
    state: RunState,
    generation: int | None = 1,
    result: dict[str, object] | None = None,
    step: str = "",
    workflow_id: str = "wf",
) -> WorkflowView:
    failure = (
        Failure("setup_database", "timeout", "took too long") if state is RunState.FAILED else None
    )
    return WorkflowView(
        workflow_id,
        state,
        run_id="r1",
        step=step,
        failure=failure,
        result=result,
        generation=generation,
    )


PROVISIONED = run(RunState.SUCCEEDED, result={"plan": "free"})


def test_a_new_tenant_is_provisioned_once() -> None:
    action = tenant_plan.plan(tenant(), TenantObserved(run(RunState.ABSENT, None)))
    assert action == tenant_plan.Action(Do.START_PROVISIONING, generation=1)
    state = tenant_plan.derive(tenant(), TenantObserved(run(RunState.RUNNING)))
    assert state.phase is Phase.PROVISIONING
    assert tenant_plan.plan(tenant(), TenantObserved(run(RunState.RUNNING))).do is Do.WAIT


def test_ready_once_provisioned_with_its_conditions() -> None:
    observed = TenantObserved(PROVISIONED, monitoring_paused=False)
    state = tenant_plan.derive(tenant(), observed)
    assert state.phase is Phase.READY
    assert state.plan is Plan.FREE
    assert {c.type: c.status for c in state.conditions} == {
        "Ready": "True",
        "Provisioned": "True",
        "PlanApplied": "True",
        "SpecApplied": "Unknown",
        "MonitoringPaused": "False",
    }
    assert tenant_plan.plan(tenant(), observed).do is Do.NOTHING


def test_fields_only_provisioning_applies_are_reported_when_edited_later() -> None:
    spec = tenant(quotas={"users": 20})
    provisioned = WorkflowView(
        "wf", RunState.SUCCEEDED, result={"plan": "free"}, requested=provisioning_fields(spec)
    )
    state = tenant_plan.derive(spec, TenantObserved(provisioned, monitoring_paused=False))
    assert {c.type: c.reason for c in state.conditions}["SpecApplied"] == "Applied"
    edited = tenant(generation=2, displayName="Acme Corp", quotas={"users": 30})
    state = tenant_plan.derive(edited, TenantObserved(provisioned, monitoring_paused=False))
    (applied,) = [c for c in state.conditions if c.type == "SpecApplied"]
    assert (applied.status, applied.reason) == ("False", "ProvisioningOnly")
    assert applied.message.startswith("displayName, quotas take effect at provisioning")
    assert state.phase is Phase.READY


def test_failed_provisioning_waits_for_a_new_generation() -> None:
    failed = run(RunState.FAILED, generation=1)
    state = tenant_plan.derive(tenant(), TenantObserved(failed))
    assert state.phase is Phase.FAILED
    assert state.failure == Failure("setup_database", "timeout", "took too long")
    assert tenant_plan.plan(tenant(), TenantObserved(failed)).do is Do.NOTHING
    retry = tenant_plan.plan(tenant(generation=2), TenantObserved(failed))
    assert retry == tenant_plan.Action(Do.START_PROVISIONING, generation=2)


def test_a_plan_change_is_an_upgrade_for_that_generation() -> None:
    spec = tenant(generation=3, plan="pro")
    observed = TenantObserved(PROVISIONED, recorded_plan=Plan.FREE, monitoring_paused=False)
    assert tenant_plan.plan(spec, observed) == tenant_plan.Action(
        Do.START_UPGRADE, generation=3, plan=Plan.PRO
    )
    running = TenantObserved(PROVISIONED, upgrade=run(RunState.RUNNING, 3), recorded_plan=Plan.FREE)
    assert tenant_plan.derive(spec, running).phase is Phase.UPGRADING
    done = TenantObserved(
        PROVISIONED,
        upgrade=run(RunState.SUCCEEDED, 3, result={"plan": "pro"}),
        recorded_plan=Plan.FREE,
        monitoring_paused=False,
    )
    assert tenant_plan.derive(spec, done).phase is Phase.READY
    assert tenant_plan.derive(spec, done).plan is Plan.PRO


def test_a_failed_upgrade_shows_failed_until_the_spec_changes() -> None:
    failed = TenantObserved(PROVISIONED, upgrade=run(RunState.FAILED, 3), recorded_plan=Plan.FREE)
    spec = tenant(generation=3, plan="pro")
    state = tenant_plan.derive(spec, failed)
    assert state.phase is Phase.FAILED
    assert state.failure is not None
    assert {c.type: c.reason for c in state.conditions}["PlanApplied"] == "UpgradeFailed"
    assert tenant_plan.plan(spec, failed).do is Do.NOTHING
    assert tenant_plan.plan(tenant(generation=4, plan="pro"), failed).do is Do.START_UPGRADE
    # Going back to the plan in force settles it without any workflow.
    back = tenant_plan.derive(tenant(generation=4, plan="free"), failed)
    assert back.phase is Phase.READY


@pytest.mark.parametrize(
    ("paused", "observed", "expected"),
    [
        (True, False, Do.PAUSE_MONITORING),
        (True, None, Do.PAUSE_MONITORING),
        (True, True, Do.NOTHING),
        (False, True, Do.RESUME_MONITORING),
        (False, None, Do.NOTHING),
    ],
)
def test_paused_follows_the_monitoring_workflow(
    paused: bool, observed: bool | None, expected: Do
) -> None:
    action = tenant_plan.plan(
        tenant(paused=paused), TenantObserved(PROVISIONED, monitoring_paused=observed)
    )
    assert action.do is expected


def test_deletion_deprovisions_then_releases() -> None:
    spec = tenant(deleting=True)
    assert tenant_plan.plan(spec, TenantObserved(PROVISIONED)).do is Do.START_DEPROVISIONING
    running = TenantObserved(PROVISIONED, deprovisioning=run(RunState.RUNNING))
    assert tenant_plan.plan(spec, running).do is Do.WAIT
    assert tenant_plan.derive(spec, running).phase is Phase.DELETING
    done = TenantObserved(PROVISIONED, deprovisioning=run(RunState.SUCCEEDED))
    assert tenant_plan.plan(spec, done).do is Do.RELEASE
    failed = TenantObserved(PROVISIONED, deprovisioning=run(RunState.FAILED))
    assert tenant_plan.derive(spec, failed).phase is Phase.FAILED
    assert tenant_plan.plan(spec, failed).do is Do.NOTHING
    # Never provisioned, or provisioning still running: nothing to remove, or cancel it.
    assert tenant_plan.plan(spec, TenantObserved(run(RunState.ABSENT, None))).do is Do.RELEASE
    assert (
        tenant_plan.plan(spec, TenantObserved(run(RunState.RUNNING))).do is Do.CANCEL_PROVISIONING
    )


def test_spec_problems_are_failures_not_workflows() -> None:
    too_many = tenant(quotas={"users": 10**9})
    problem = spec_problem(too_many, "local", ["local"])
    assert problem is not None
    assert "users" in problem
    observed = TenantObserved(run(RunState.ABSENT, None), spec_problem=problem)
    assert tenant_plan.plan(too_many, observed).do is Do.NOTHING
    state = tenant_plan.derive(too_many, observed)
    assert state.phase is Phase.FAILED
    assert state.failure is not None
    assert state.failure.reason == "InvalidSpec"
    assert spec_problem(tenant(storage={"provider": "s3"}), "local", ["local"]) is not None
    assert spec_problem(tenant(storage={"provider": "s3"}), "local", ["local", "s3"]) is not None
    assert spec_problem(tenant(storage={"provider": "local"}), "local", ["local"]) is None


def test_upgrade_ids_carry_the_generation() -> None:
    workflow_id = upgrade_workflow_id(UID, 12)
    assert upgrade_generation(workflow_id, UID) == 12
    assert upgrade_generation(f"tenant-provisioning-{UID}", UID) is None
    assert upgrade_generation(f"tenant-upgrade-{UID}-gen-x", UID) is None
    assert len(workflow_id) <= 81


def test_conditions_keep_their_transition_time_until_status_changes() -> None:
    first = merge(
        None, [Condition("Ready", "False", "Provisioning")], 1, datetime(2026, 1, 1, tzinfo=UTC)
    )
    later = datetime(2026, 1, 2, tzinfo=UTC)
    same = merge(first, [Condition("Ready", "False", "Upgrading", "x")], 2, later)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 2
    flipped = merge(same, [Condition("Ready", "True", "Ready")], 2, later)
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"
    assert changes({"a": 1, "b": None}, {"a": 1, "b": None, "c": None}) == {}
    assert changes({"a": 1}, {"a": 2}) == {"a": 2}


def migration(deleting: bool = False) -> migration_plan.MigrationSpec:
    meta = {"uid": "m-1", "name": "to-s3", "namespace": "ns", "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T10:00:00Z"
    return read_migration(meta, {"tenantRef": {"name": "acme"}, "target": "s3"})


READY_TENANT = TenantRef(tenant_id=UID, phase="Ready")


def test_a_migration_waits_for_its_tenant_and_for_others() -> None:
    absent = run(RunState.ABSENT, None)
    assert (
        migration_plan.plan(migration(), MigrationObserved(None, absent)) is migration_plan.Do.WAIT
    )
    provisioning = TenantRef(tenant_id=UID, phase="Provisioning")
    assert migration_plan.derive(migration(), MigrationObserved(provisioning, absent)).phase is (
        migration_plan.Phase.PENDING
    )
    blocked = MigrationObserved(READY_TENANT, absent, blocked_by="file-migration-x")
    assert migration_plan.plan(migration(), blocked) is migration_plan.Do.WAIT
    assert migration_plan.plan(migration(), MigrationObserved(READY_TENANT, absent)) is (
        migration_plan.Do.START
    )
    request = migration().request(UID)
    assert (request.tenant_id, request.target, request.migration_id) == (UID, "s3", "m-1")


@pytest.mark.parametrize(
    ("state", "step", "phase"),
    [
        (RunState.RUNNING, "copy", migration_plan.Phase.RUNNING),
        (RunState.SUCCEEDED, "done", migration_plan.Phase.SUCCEEDED),
        (RunState.CANCELLED, "cancelled", migration_plan.Phase.CANCELLED),
        (RunState.FAILED, "rolled_back", migration_plan.Phase.ROLLED_BACK),
        (RunState.FAILED, "copy", migration_plan.Phase.FAILED),
    ],
)
def test_migration_phases_follow_the_workflow(
    state: RunState, step: str, phase: migration_plan.Phase
) -> None:
    view = WorkflowView(
        "file-migration-x",
        state,
        step=step,
        counters={"files_done": 3, "files_total": 10, "bytes_done": 30, "bytes_total": 100},
    )
    derived = migration_plan.derive(migration(), MigrationObserved(READY_TENANT, view))
    assert derived.phase is phase
    assert derived.progress == {
        "filesDone": 3,
        "filesTotal": 10,
        "bytesDone": 30,
        "bytesTotal": 100,
    }


def test_every_spec_field_of_a_storage_migration_reaches_the_request() -> None:
    crd = load_crd("storagemigrations.adx.dev")
    fields = set(schema_of(crd)["properties"]["spec"]["properties"])
    spec = {
        "tenantRef": {"name": "acme"},
        "source": "s3",
        "target": "gcs",
        "fallbackTargets": ["azure"],
        "prefix": "invoices/2024/",
        "batchSize": 7,
        "deleteSource": True,
    }
    assert set(spec) == fields, "a CRD field the operator does not read (or the reverse)"
    read = read_migration({"uid": "m-1", "name": "m", "namespace": "ns"}, spec)
    request = read.request(UID)
    assert read.tenant_name == "acme"
    assert (request.source, request.target, request.fallback_targets) == ("s3", "gcs", ["azure"])
    assert request.prefix == "invoices/2024/"
    assert (request.batch_size, request.delete_source) == (7, True)


def test_deleting_a_running_migration_cancels_it_first() -> None:
    running = MigrationObserved(READY_TENANT, run(RunState.RUNNING))
    assert migration_plan.plan(migration(deleting=True), running) is migration_plan.Do.CANCEL
    ended = MigrationObserved(READY_TENANT, run(RunState.CANCELLED))
    assert migration_plan.plan(migration(deleting=True), ended) is migration_plan.Do.RELEASE
    assert migration_plan.plan(migration(), ended) is migration_plan.Do.NOTHING


def test_a_stale_status_landing_after_a_settled_look_unsettles_the_resource() -> None:
    memo = kopf.Memo()
    written = {"phase": "Ready", "runId": "r2", "failure": None}
    remember(memo, True, 3, written)
    assert is_settled(memo, 3, {"phase": "Ready", "runId": "r2"}, 60)
    # An older look's write (Provisioning) lands after the newer one: look again.
    assert not is_settled(memo, 3, {"phase": "Provisioning", "runId": "r2"}, 60)
    assert not is_settled(memo, 3, {"phase": "Ready", "runId": "r2", "failure": {}}, 60)
    assert not is_settled(memo, 4, {"phase": "Ready", "runId": "r2"}, 60), "a new generation"
    assert not is_settled(memo, 3, {"phase": "Ready", "runId": "r2"}, 0), "resync due"
    remember(memo, False, 3, {"workflowId": "wf", "runId": "r3"}, in_flight=True)
    assert memo["in_flight"] == ("wf", "r3")
    assert not is_settled(memo, 3, {"workflowId": "wf", "runId": "r3"}, 60)


def test_the_example_tenant_is_one_a_default_deployment_provisions() -> None:
    example = yaml.safe_load((EXAMPLES / "tenant.yaml").read_text())
    meta = {**example["metadata"], "uid": UID}
    assert spec_problem(read_tenant(meta, example["spec"]), "local", ["local"]) is None


def test_a_failed_run_without_the_operators_memo_is_never_retried_in_a_loop() -> None:
    # tenant_deprovisioning_workflow started through the API under the same id, failed.
    api_started = run(RunState.FAILED, generation=None)
    deleting = TenantObserved(PROVISIONED, deprovisioning=api_started)
    assert tenant_plan.plan(tenant(generation=5, deleting=True), deleting).do is Do.NOTHING
