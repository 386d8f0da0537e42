"""Worker Versioning on the real Temporal dev server: builds A and B of the tenants worker
side by side in one Worker Deployment. An execution started under A finishes on A after B
is made current, new executions go to B, and a rollback to A leaves B's executions on B."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from contextlib import AsyncExitStack
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner

from adx_core.contracts.monitoring import PAUSE_SIGNAL, monitoring_workflow_id
from adx_core.contracts.plans import Plan
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
    TENANT_PROVISIONING_WORKFLOW,
    TenantAdmin,
    TenantCreationRequest,
    provisioning_workflow_id,
)
from adx_core.settings import Settings
from adx_core.temporal import deployments
from adx_workers.resources import WorkerResources
from adx_workers.rollout import PromotionRefusedError, promote
from adx_workers.tenants import worker as tenants
from adx_workers.tenants.worker import build_worker as build_tenants_worker
from adx_workers.tenants.workflows import TenantProvisioningWorkflow
from adx_workers.versioning import deployment_config, deployment_name
from tests.integration.operations.conftest import slow_activation
from tests.support.workers import tenants_worker_with


def build(settings: Settings, build_id: str) -> Settings:
    return settings.model_copy(update={"worker_build_id": build_id})


async def provision(client: Client, settings: Settings) -> WorkflowHandle[Any, Any]:
    tenant_id = str(uuid.uuid4())
    slug = f"v{tenant_id[:8]}"
    return await client.start_workflow(
        TENANT_PROVISIONING_WORKFLOW,
        TenantCreationRequest(
            tenant_id=tenant_id,
            slug=slug,
            display_name="Versioned",
            plan=Plan.FREE,
            admin=TenantAdmin(email=f"ada@{slug}.test", name="Ada"),
            requested_by=PLATFORM_TENANT_ID,
        ),
        id=provisioning_workflow_id(tenant_id),
        task_queue=settings.task_queue("tenants"),
    )


async def runs_on(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The build id the execution is on, once its first task has been taken."""
    for _ in range(100):
        found = deployments.execution_build_id(await handle.describe())
        if found:
            return found
        await asyncio.sleep(0.1)
    return None


def tenant_of(handle: WorkflowHandle[Any, Any]) -> str:
    return handle.id.removeprefix("tenant-provisioning-")


async def moves_to(handle: WorkflowHandle[Any, Any], build_id: str) -> bool:
    for _ in range(100):
        if deployments.execution_build_id(await handle.describe()) == build_id:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_pinned_executions_stay_on_their_build_through_promotion_and_rollback(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> None:
    name = deployment_name(settings, "tenants")
    queue = settings.task_queue("tenants")
    async with AsyncExitStack() as stack:
        for build_id in ("build-a", "build-b"):
            versioned = dataclasses.replace(resources, settings=build(settings, build_id))
            worker = tenants_worker_with(
                temporal_client,
                versioned,
                queue,
                [slow_activation(versioned, 3.0)],
                deployment_config=deployment_config(versioned.settings, "tenants"),
            )
            await stack.enter_async_context(worker)
            await deployments.wait_for_version(temporal_client, name, build_id, 30)

        await deployments.set_current(temporal_client, name, "build-a")
        first = await provision(temporal_client, settings)
        assert await runs_on(first) == "build-a"

        await deployments.set_current(temporal_client, name, "build-b")
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert state.current_build_id == "build-b"
        second = await provision(temporal_client, settings)
        assert await runs_on(second) == "build-b"
        # Pinned: the execution A started finishes on A.
        await first.result()
        assert deployments.execution_build_id(await first.describe()) == "build-a"
        # Monitoring, which A's provisioning started on A, is AUTO_UPGRADE: its next task
        # (a signal wakes it) runs on the current version.
        monitoring = temporal_client.get_workflow_handle(monitoring_workflow_id(tenant_of(first)))
        await monitoring.signal(PAUSE_SIGNAL)
        assert await moves_to(monitoring, "build-b")

        # Rollback: A is current again; what B started stays on B and finishes there.
        await deployments.set_current(temporal_client, name, "build-a")
        third = await provision(temporal_client, settings)
        assert await runs_on(third) == "build-a"
        await second.result()
        assert deployments.execution_build_id(await second.describe()) == "build-b"
        await third.result()


# Build B's "code" for the gate: provisioning that now waits before its first step, a
# change that cannot replay an execution already past it (non-deterministic).
@workflow.defn(name=TENANT_PROVISIONING_WORKFLOW, sandboxed=False)
class ReorderedProvisioning:
    @workflow.run
    async def run(self, request: TenantCreationRequest) -> None:
        await workflow.sleep(1)


async def test_the_replay_gate_refuses_a_non_deterministic_build_and_keeps_the_current_one(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> None:
    name = deployment_name(settings, "tenants")
    queue = settings.task_queue("tenants")
    async with AsyncExitStack() as stack:
        for build_id in ("build-a", "build-b"):
            versioned = dataclasses.replace(resources, settings=build(settings, build_id))
            await stack.enter_async_context(build_tenants_worker(temporal_client, versioned, queue))
            await deployments.wait_for_version(temporal_client, name, build_id, 30)
        await deployments.set_current(temporal_client, name, "build-a")
        await (await provision(temporal_client, settings)).result()

        # Every other workflow of the worker as it is, provisioning changed.
        unchanged = [
            w for w in tenants.workflows(versioned=True) if w is not TenantProvisioningWorkflow
        ]
        with pytest.raises(PromotionRefusedError) as refused:
            await promote(
                temporal_client,
                settings,
                "tenants",
                "build-b",
                [ReorderedProvisioning, *unchanged],
                runner=UnsandboxedWorkflowRunner(),
            )
        failures = refused.value.result.failures
        assert {f.workflow_type for f in failures} == {TENANT_PROVISIONING_WORKFLOW}
        assert "build-b not promoted" in str(refused.value)
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert state.current_build_id == "build-a"

        # B's real code replays the same histories, so it is promoted.
        passed = await promote(
            temporal_client, settings, "tenants", "build-b", tenants.workflows(versioned=True)
        )
        assert passed.replayed >= 1
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert state.current_build_id == "build-b"
