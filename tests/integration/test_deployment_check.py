"""deployment_check_workflow, the fleet's own gate: run pinned to a new worker build before it
takes traffic, it checks that build's database role and schema, its storage and (files) its
scanner. Driven as the chart's rollout hook Job drives it: with the exact arguments the
chart renders, through the `adx` command, against the real Temporal dev server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import ActivityEnvironment

from adx_core.contracts.deployment import DEPLOYMENT_CHECK_WORKFLOW, DeploymentCheckResult
from adx_core.scanning.clamd import ClamdScanner
from adx_core.scanning.eicar import EicarScanner
from adx_core.settings import Environment, Settings
from adx_core.storage import StorageRegistry
from adx_core.temporal import deployments
from adx_workers.deployment_check.activities import (
    PROBE_PREFIX,
    DeploymentCheckActivities,
    Migrations,
    shipped_migrations,
)
from adx_workers.resources import WorkerResources
from adx_workers.tenants.worker import build_worker as build_tenants_worker
from adx_workers.versioning import deployment_name
from tests.chart.helpers import manifests, of_kind, render
from tests.integration.test_worker_versioning import adx, start_builds
from tests.replay.test_replay import HISTORIES, recording


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def broken_storage(settings: Settings, tmp_path: Path) -> AsyncIterator[StorageRegistry]:
    """Local storage whose root is a regular file: nothing can be written under it."""
    root = tmp_path / "not-a-directory"
    root.write_text("a file where the storage root should be")
    stores = StorageRegistry(settings.model_copy(update={"storage_root": root}))
    yield stores
    await stores.close()


async def test_a_healthy_build_passes_every_check_and_leaves_nothing_behind(
    resources: WorkerResources,
) -> None:
    checks = DeploymentCheckActivities(
        resources, "files", EicarScanner(Environment.TEST, max_bytes=1000)
    )
    result = await ActivityEnvironment().run(checks.check_dependencies)
    assert [(c.name, c.ok) for c in result.checks] == [
        ("database", True),
        ("storage", True),
        ("scanner", True),
    ]
    assert result.checks[0].detail == f"schema at {shipped_migrations().head}"
    assert (result.service, result.failed) == ("files", [])
    page = await resources.storage.list(f"{PROBE_PREFIX}/")
    assert not page.objects


async def test_every_failing_dependency_is_reported_in_one_run(
    resources: WorkerResources, broken_storage: StorageRegistry
) -> None:
    broken = dataclasses.replace(resources, stores=broken_storage)
    checks = DeploymentCheckActivities(
        broken,
        "files",
        ClamdScanner(f"127.0.0.1:{closed_port()}", timeout=2.0, max_bytes=1000),
        # A build whose code ships a migration this database has not had.
        migrations=Migrations("9999", shipped_migrations().known | {"9999"}),
    )
    result = await ActivityEnvironment().run(checks.check_dependencies)
    assert [(c.name, c.ok) for c in result.checks] == [
        ("database", False),
        ("storage", False),
        ("scanner", False),
    ]
    database, storage, scanner = result.checks
    assert f"at revision {shipped_migrations().head}, this build needs 9999: run adx migrate" in (
        database.detail
    )
    assert storage.detail.startswith("local write of deployment-checks/files/")
    assert "clamd" in scanner.detail
    assert len(result.failed) == 3


async def test_an_older_build_runs_on_a_schema_a_newer_build_migrated(
    resources: WorkerResources,
) -> None:
    # The build before the newest migration: it does not know the database's revision.
    current = shipped_migrations()
    older = Migrations("0005", current.known - {current.head})
    checks = DeploymentCheckActivities(resources, "tenants", migrations=older)
    result = await ActivityEnvironment().run(checks.check_dependencies)
    assert result.failed == []
    assert result.checks[0].detail == f"schema at {current.head}, newer than this build's 0005"


async def test_the_app_role_reads_the_schema_revision_but_cannot_change_it(
    app_engine: AsyncEngine,
) -> None:
    async with app_engine.connect() as connection:
        revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert revision == shipped_migrations().head
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match="permission denied"):
            await connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))


def promote_job_args(service: str, build_ids: list[str], current: str) -> list[str]:
    """The container args of the chart's promote hook Job for ``service``, as
    `helm upgrade` would run it with these worker versions."""
    values: dict[str, Any] = {
        "workers": {
            service: {
                "versions": [{"buildId": b, "replicas": 1} for b in build_ids],
                "currentBuildId": current,
            }
        },
        "rollout": {
            "gateWorkflow": DEPLOYMENT_CHECK_WORKFLOW,
            "pollersTimeoutSeconds": 30,
        },
    }
    jobs = [
        job
        for job in of_kind(manifests(render(values)), "Job")
        if job["metadata"]["labels"].get("adx.dev/service") == service
        and job["metadata"]["labels"].get("adx.dev/rollout") == "promote"
    ]
    (job,) = jobs
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


async def gate_results(client: Client, queue: str) -> list[DeploymentCheckResult]:
    results = []
    async for execution in client.list_workflows(
        f"WorkflowType = '{DEPLOYMENT_CHECK_WORKFLOW}' AND TaskQueue = '{queue}'"
        " AND ExecutionStatus = 'Completed'"
    ):
        handle = client.get_workflow_handle(
            execution.id, run_id=execution.run_id, result_type=DeploymentCheckResult
        )
        results.append(await handle.result())
    return results


async def test_the_chart_hook_refuses_a_build_that_cannot_reach_its_storage(
    settings: Settings,
    temporal_client: Client,
    resources: WorkerResources,
    broken_storage: StorageRegistry,
) -> None:
    name = deployment_name(settings, "tenants")
    queue = settings.task_queue("tenants")
    async with AsyncExitStack() as stack:
        # build-a and build-c deployed as they should be; build-b with a storage root it
        # cannot write (a wrong volume, a wrong bucket, missing credentials).
        await start_builds(
            stack,
            temporal_client,
            settings,
            resources,
            lambda build_id, versioned: build_tenants_worker(
                temporal_client,
                dataclasses.replace(versioned, stores=broken_storage)
                if build_id == "build-b"
                else versioned,
                queue,
            ),
            ("build-a", "build-b", "build-c"),
        )
        first = await adx(settings, *promote_job_args("tenants", ["build-a"], "build-a"))
        assert first.exit_code == 0, first.output
        assert "gate workflow deployment_check_workflow succeeded" in first.output

        refused = await adx(
            settings, *promote_job_args("tenants", ["build-a", "build-b"], "build-b")
        )
        assert refused.exit_code == 1, refused.output
        assert "build-b not promoted" in refused.output
        assert "deployment_check_workflow failed on it" in refused.output
        assert "tenants build build-b failed 1 of 2 checks: storage: local write of" in (
            refused.output
        )
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert state.current_build_id == "build-a"

        promoted = await adx(
            settings, *promote_job_args("tenants", ["build-a", "build-c"], "build-c")
        )
        assert promoted.exit_code == 0, promoted.output
        state = await deployments.describe(temporal_client, name)
        assert state is not None
        assert state.current_build_id == "build-c"
        # Each passing check ran on the build it was promoting: pinned, before any traffic.
        ran_on = sorted(result.build_id for result in await gate_results(temporal_client, queue))
        assert ran_on == ["build-a", "build-c"]


@recording
async def test_record_deployment_check_histories(
    settings: Settings,
    temporal_client: Client,
    resources: WorkerResources,
    broken_storage: StorageRegistry,
) -> None:
    queue = settings.task_queue("tenants")
    for name, stores in (("passed", resources.stores), ("failed", broken_storage)):
        worker_resources = dataclasses.replace(resources, stores=stores)
        async with build_tenants_worker(temporal_client, worker_resources, queue):
            handle = await temporal_client.start_workflow(
                DEPLOYMENT_CHECK_WORKFLOW, id=f"deployment-check-{name}", task_queue=queue
            )
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()
        history = await handle.fetch_history()
        target = HISTORIES / f"{DEPLOYMENT_CHECK_WORKFLOW}--{name}.json"
        await asyncio.to_thread(target.write_text, history.to_json())
