"""Worker Versioning on the real Temporal dev server: builds A and B of the tenants worker
side by side in one Worker Deployment. An execution started under A finishes on A after B
is made current, new executions go to B, and a rollback to A leaves B's executions on B."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from click.testing import CliRunner, Result
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from adx_cli.main import main
from adx_core.contracts.monitoring import PAUSE_SIGNAL, monitoring_workflow_id
from adx_core.contracts.plans import Plan
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
    TENANT_PROVISIONING_WORKFLOW,
    VALIDATE_TENANT_REQUEST_ACTIVITY,
    TenantAdmin,
    TenantCreationRequest,
    TenantValidationInput,
    TenantValidationResult,
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
from tests.support.processes import settings_env
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


WorkerFor = Callable[[str, WorkerResources], Worker]


async def start_builds(
    stack: AsyncExitStack,
    client: Client,
    settings: Settings,
    resources: WorkerResources,
    worker_for: WorkerFor,
    build_ids: tuple[str, ...] = ("build-a", "build-b"),
) -> None:
    """Builds of the tenants worker (A and B by default), side by side, their pollers
    registered."""
    name = deployment_name(settings, "tenants")
    for build_id in build_ids:
        versioned = dataclasses.replace(resources, settings=build(settings, build_id))
        await stack.enter_async_context(worker_for(build_id, versioned))
        await deployments.wait_for_version(client, name, build_id, 30)


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
        await start_builds(
            stack,
            temporal_client,
            settings,
            resources,
            lambda _, versioned: tenants_worker_with(
                temporal_client,
                versioned,
                queue,
                [slow_activation(versioned, 3.0)],
                deployment_config=deployment_config(versioned.settings, "tenants"),
            ),
        )

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
        await start_builds(
            stack,
            temporal_client,
            settings,
            resources,
            lambda _, versioned: build_tenants_worker(temporal_client, versioned, queue),
        )
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


async def ramping(
    client: Client, name: str, build_id: str, promoting: asyncio.Task[Result]
) -> None:
    for _ in range(60):
        if promoting.done():
            raise AssertionError(f"promote ended before the ramp: {promoting.result().output}")
        state = await deployments.describe(client, name)
        if state is not None and state.ramping_build_id == build_id:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{build_id} never started ramping")


async def adx(settings: Settings, *args: str) -> Result:
    """``adx`` as an operator types it, in a thread (it runs its own event loop)."""
    env = settings_env(settings)
    return await asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=env, catch_exceptions=False
    )


async def test_adx_rollout_promotes_ramps_stops_a_failing_ramp_and_rolls_back(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> None:
    name = deployment_name(settings, "tenants")
    queue = settings.task_queue("tenants")

    @activity.defn(name=VALIDATE_TENANT_REQUEST_ACTIVITY)
    async def broken(request: TenantValidationInput) -> TenantValidationResult:
        raise ApplicationError("build B refuses every tenant", non_retryable=True)

    async with AsyncExitStack() as stack:
        await start_builds(
            stack,
            temporal_client,
            settings,
            resources,
            lambda build_id, versioned: tenants_worker_with(
                temporal_client,
                versioned,
                queue,
                [broken] if build_id == "build-b" else [],
                deployment_config=deployment_config(versioned.settings, "tenants"),
            ),
        )
        done = await adx(
            settings, "rollout", "promote", "--service", "tenants", "--build-id", "build-a"
        )
        assert done.exit_code == 0, done.output
        assert "build-a: current" in done.output

        # Progressive to B: B fails what it gets at 50%, so the ramp stops and A stays current.
        async def traffic() -> None:
            for _ in range(8):
                await provision(temporal_client, settings)
                await asyncio.sleep(0.2)

        promoting = asyncio.create_task(
            adx(
                settings,
                *("rollout", "promote", "--service", "tenants", "--build-id", "build-b"),
                *("--strategy", "Progressive", "--steps", "50", "--step-seconds", "3"),
            )
        )
        await deployments.wait_for_version(temporal_client, name, "build-b", 30)
        await ramping(temporal_client, name, "build-b", promoting)
        await traffic()
        refused = await promoting
        assert refused.exit_code == 1, refused.output
        assert "build-b not promoted" in refused.output
        assert "failed at 50%" in refused.output
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert (state.current_build_id, state.ramping_build_id) == ("build-a", None)

        ramped = await adx(
            settings,
            "rollout",
            "ramp",
            "--service",
            "tenants",
            "--build-id",
            "build-b",
            "--percent",
            "20",
        )
        assert ramped.exit_code == 0, ramped.output
        status = await adx(settings, "rollout", "status", "--service", "tenants")
        assert "current build-a, ramping build-b at 20%" in status.output

        # Rollback stops the ramp and keeps A; after B was current, it goes back to A.
        await deployments.set_current(temporal_client, name, "build-b")
        back = await adx(settings, "rollout", "rollback", "--service", "tenants")
        assert back.exit_code == 0, back.output
        assert "build-a is current" in back.output
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert (state.current_build_id, state.ramping_build_id) == ("build-a", None)
        drain = await adx(settings, "rollout", "drain-status", "--service", "tenants")
        assert drain.exit_code in (0, 3), drain.output
        assert "build-b" in drain.output


@workflow.defn(name="rollout_gate_check", sandboxed=False)
class GateCheck:
    """A smoke test a team runs on the new build before it takes traffic."""

    @workflow.run
    async def run(self) -> str:
        return workflow.info().task_queue


@workflow.defn(name="rollout_gate_failing", sandboxed=False)
class FailingGate:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("the smoke test found a problem", non_retryable=True)


async def test_the_gate_workflow_runs_on_the_new_build_and_a_failure_refuses_it(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> None:
    name = deployment_name(settings, "tenants")
    queue = settings.task_queue("tenants")
    async with AsyncExitStack() as stack:
        await start_builds(
            stack,
            temporal_client,
            settings,
            resources,
            lambda _, versioned: Worker(
                temporal_client,
                task_queue=queue,
                workflows=[*tenants.workflows(versioned=True), GateCheck, FailingGate],
                activities=tenants.activities_for(versioned),
                deployment_config=deployment_config(versioned.settings, "tenants"),
            ),
        )
        await deployments.set_current(temporal_client, name, "build-a")

        with pytest.raises(PromotionRefusedError) as refused:
            await promote(
                temporal_client,
                settings,
                "tenants",
                "build-b",
                tenants.workflows(versioned=True),
                gate_workflow="rollout_gate_failing",
            )
        assert "the gate workflow rollout_gate_failing failed on it" in str(refused.value)
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert state.current_build_id == "build-a"

        await promote(
            temporal_client,
            settings,
            "tenants",
            "build-b",
            tenants.workflows(versioned=True),
            gate_workflow="rollout_gate_check",
        )
        gates = [
            execution
            async for execution in temporal_client.list_workflows(
                "WorkflowType = 'rollout_gate_check'"
            )
        ]
        # It ran pinned to B, before B took any traffic.
        assert gates
        for execution in gates:
            handle = temporal_client.get_workflow_handle(execution.id, run_id=execution.run_id)
            assert deployments.execution_build_id(await handle.describe()) == "build-b"
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert state.current_build_id == "build-b"
