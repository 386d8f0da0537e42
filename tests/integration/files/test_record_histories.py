"""Record file_migration_workflow histories for tests/replay (ADX_RECORD_HISTORIES=1)."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError

from adx_cli.devstack.net import free_port
from adx_core.contracts.storage import FileMigrationRequest
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry
from adx_workers.files.worker import build_worker
from adx_workers.resources import WorkerResources
from tests.integration.files.conftest import seed_tenant
from tests.integration.files.test_migration import progress_of, start
from tests.integration.files.test_migration_failures import wait_until
from tests.replay.test_replay import HISTORIES, recording
from tests.support.storage import with_storage


async def _save(client: Client, workflow_id: str, run_id: str | None, name: str) -> None:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


@recording
async def test_record_migration_with_continue_as_new(
    settings: Settings, temporal_client: Client, files_worker: object, owner_engine: AsyncEngine
) -> None:
    stores = StorageRegistry(settings)
    seeded = await seed_tenant(owner_engine, stores.get("local"), files=12, unrecorded=1)
    handle = await start(
        temporal_client,
        settings,
        FileMigrationRequest(
            tenant_id=seeded.tenant_id,
            target="s3",
            batch_size=4,
            batches_per_run=2,
            delete_source=True,
            migration_id=str(uuid.uuid4()),
        ),
    )
    result = await handle.result()
    assert result.runs == 2
    await _save(
        temporal_client,
        handle.id,
        handle.first_execution_run_id,
        "file_migration_workflow--continued_as_new",
    )
    await _save(temporal_client, handle.id, None, "file_migration_workflow--succeeded")
    await stores.close()


@recording
async def test_record_migration_cancel(
    settings: Settings, temporal_client: Client, files_worker: object, owner_engine: AsyncEngine
) -> None:
    stores = StorageRegistry(settings)
    seeded = await seed_tenant(owner_engine, stores.get("local"), files=100, unrecorded=0)
    handle = await start(
        temporal_client,
        settings,
        FileMigrationRequest(
            tenant_id=seeded.tenant_id,
            target="s3",
            batch_size=5,
            parallelism=1,
            migration_id=str(uuid.uuid4()),
        ),
    )

    async def some_switched() -> bool:
        snapshot = await progress_of(temporal_client, handle.id)
        return snapshot.counters.get("records_switched", 0) >= 10

    await wait_until(some_switched, 60, "the first records to switch")
    await handle.cancel()
    with contextlib.suppress(WorkflowFailureError):  # the cancel is what we record
        await handle.result()
    await _save(temporal_client, handle.id, None, "file_migration_workflow--cancelled")
    await stores.close()


@recording
async def test_record_migration_failover(
    settings: Settings,
    temporal_client: Client,
    resources: WorkerResources,
    owner_engine: AsyncEngine,
) -> None:
    dead = with_storage(settings, {"ADX_S3_ENDPOINT": f"127.0.0.1:{free_port()}"})
    stores = StorageRegistry(dead)
    worker = build_worker(
        temporal_client,
        dataclasses.replace(resources, settings=dead, stores=stores),
        dead.task_queue("files"),
    )
    async with worker:
        seeded = await seed_tenant(owner_engine, stores.get("local"), files=6)
        handle = await start(
            temporal_client,
            dead,
            FileMigrationRequest(
                tenant_id=seeded.tenant_id,
                target="s3",
                fallback_targets=["azure"],
                target_attempts=2,
                migration_id=str(uuid.uuid4()),
            ),
        )
        result = await handle.result()
    assert result.target == "azure"
    await _save(temporal_client, handle.id, None, "file_migration_workflow--failed_over")
    await stores.close()
