"""The operator's view is level-based: a restart in the middle of provisioning starts no
second workflow, a failed workflow shows as Failed with its step and reason until a new
generation retries it, and what the spec asks that cannot be done is a clear failure."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from adx_core.contracts.tenants import (
    SETUP_TENANT_DATABASE_ACTIVITY,
    TenantDatabaseInput,
    TenantDatabaseResult,
    provisioning_workflow_id,
)
from adx_workers.resources import WorkerResources
from tests.integration.operations.conftest import slow_activation
from tests.operator.conftest import (
    TENANTS,
    OperatorFactory,
    conditions,
    phase,
    tenant_manifest,
    wait_for,
)
from tests.support.kube import KubeHandle
from tests.support.workers import WorkerFactory


async def runs_of(client: Client, workflow_id: str) -> list[str]:
    """Every run Temporal has under ``workflow_id`` (visibility lags: ask until stable)."""
    runs: list[str] = []
    for _ in range(20):
        runs = [
            execution.run_id
            async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'")
        ]
        if runs:
            return runs
        await asyncio.sleep(0.2)
    return runs


async def test_restart_mid_provisioning_starts_no_second_workflow(
    kube: KubeHandle,
    operators: OperatorFactory,
    worker_with: WorkerFactory,
    resources: WorkerResources,
    temporal_client: Client,
) -> None:
    async with worker_with(slow_activation(resources, 3.0)):
        first = operators()
        await first.ready()
        created = await kube.apply(tenant_manifest())
        name, uid = created["metadata"]["name"], created["metadata"]["uid"]
        provisioning = await wait_for(
            kube, TENANTS, "default", name, lambda o: phase(o) == "Provisioning"
        )
        assert provisioning is not None
        run_id = provisioning["status"]["runId"]
        await asyncio.to_thread(first.stop)

        second = operators()
        await second.ready()
        ready = await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Ready")
        assert ready is not None
        assert ready["status"]["runId"] == run_id
        assert await runs_of(temporal_client, provisioning_workflow_id(uid)) == [run_id]


async def test_a_failed_provisioning_is_shown_and_a_new_generation_retries_it(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: object,
) -> None:
    operator = operators()
    await operator.ready()
    # The same name in two namespaces asks for the same slug: the second one fails.
    first = await kube.apply(tenant_manifest("dupe-slug", namespace="team-a"))
    await wait_for(kube, TENANTS, "team-a", "dupe-slug", lambda o: phase(o) == "Ready")
    await kube.apply(tenant_manifest("dupe-slug", namespace="team-b"))
    failed = await wait_for(kube, TENANTS, "team-b", "dupe-slug", lambda o: phase(o) == "Failed")
    assert failed is not None
    assert failed["status"]["failure"]["step"] == "validate_request"
    assert failed["status"]["failure"]["reason"] == "SlugTaken"
    assert "dupe-slug" in failed["status"]["failure"]["message"]
    assert conditions(failed)["Ready"] == ("False", "Failed")
    assert conditions(failed)["Provisioned"] == ("False", "ProvisioningFailed")
    failed_run = failed["status"]["runId"]

    # Nothing retries it by itself (a repeated event or a resync is not a new request)...
    await asyncio.sleep(1.0)
    still = await kube.get(TENANTS, "team-b", "dupe-slug")
    assert still is not None
    assert (phase(still), still["status"]["runId"]) == ("Failed", failed_run)

    # ...but once the slug is free, an edit of the spec (generation 2) does.
    await kube.delete(TENANTS, "team-a", "dupe-slug")
    await wait_for(kube, TENANTS, "team-a", "dupe-slug", lambda o: o is None)
    assert first["metadata"]["uid"] != failed["metadata"]["uid"]
    await kube.patch(TENANTS, "team-b", "dupe-slug", {"spec": {"displayName": "Second try"}})
    ready = await wait_for(kube, TENANTS, "team-b", "dupe-slug", lambda o: phase(o) == "Ready")
    assert ready is not None
    assert ready["status"]["runId"] != failed_run
    assert ready["status"]["observedGeneration"] == 2
    assert "failure" not in ready["status"]


async def test_what_the_deployment_cannot_do_is_a_failure_without_a_workflow(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: object,
    temporal_client: Client,
) -> None:
    operator = operators()
    await operator.ready()
    # Valid for the CRD, but ten times the free plan's users is the most an override may be.
    created = await kube.apply(tenant_manifest(quotas={"users": 10**9}))
    name = created["metadata"]["name"]
    failed = await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Failed")
    assert failed is not None
    assert failed["status"]["failure"]["reason"] == "InvalidSpec"
    assert "users" in failed["status"]["failure"]["message"]
    assert (
        await runs_of(temporal_client, provisioning_workflow_id(created["metadata"]["uid"])) == []
    )
    # Fixing the spec provisions it.
    await kube.patch(TENANTS, "default", name, {"spec": {"quotas": {"users": 20}}})
    await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Ready")


async def test_a_workflow_terminated_behind_its_back_shows_as_failed(
    kube: KubeHandle,
    operators: OperatorFactory,
    worker_with: WorkerFactory,
    resources: WorkerResources,
    temporal_client: Client,
) -> None:
    async with worker_with(slow_activation(resources, 5.0)):
        operator = operators()
        await operator.ready()
        created = await kube.apply(tenant_manifest())
        name, uid = created["metadata"]["name"], created["metadata"]["uid"]
        await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Provisioning")
        handle = temporal_client.get_workflow_handle(provisioning_workflow_id(uid))
        await handle.terminate(reason="stopped by an administrator")
        failed = await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Failed")
        assert failed is not None
        assert failed["status"]["failure"]["reason"] == "terminated"
        assert failed["status"]["failure"]["message"] == "stopped by an administrator"


async def test_changes_made_while_the_operator_was_down_are_acted_on_at_start(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: object,
) -> None:
    first = operators()
    await first.ready()
    created = await kube.apply(tenant_manifest())
    name = created["metadata"]["name"]
    await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Ready")
    await asyncio.to_thread(first.stop)

    await kube.patch(TENANTS, "default", name, {"spec": {"plan": "enterprise"}})
    second = operators()
    await second.ready()
    upgraded = await wait_for(
        kube,
        TENANTS,
        "default",
        name,
        lambda o: phase(o) == "Ready" and (o or {})["status"].get("plan") == "enterprise",
        what="the upgrade asked for while the operator was down",
    )
    assert upgraded is not None
    assert upgraded["status"]["observedGeneration"] == 2


async def test_the_failed_step_is_named_even_after_the_saga_cleaned_up(
    kube: KubeHandle, operators: OperatorFactory, worker_with: WorkerFactory
) -> None:
    @activity.defn(name=SETUP_TENANT_DATABASE_ACTIVITY)
    async def full_disk(request: TenantDatabaseInput) -> TenantDatabaseResult:
        raise ApplicationError(
            "no space left for the tenant's tables", type="DiskFull", non_retryable=True
        )

    async with worker_with(full_disk):
        operator = operators()
        await operator.ready()
        created = await kube.apply(tenant_manifest())
        failed = await wait_for(
            kube, TENANTS, "default", created["metadata"]["name"], lambda o: phase(o) == "Failed"
        )
    assert failed is not None
    # The record was made and undone before the run ended; the step is still the one that failed.
    assert failed["status"]["failure"] == {
        "step": "setup_database",
        "reason": "DiskFull",
        "message": "no space left for the tenant's tables",
    }
