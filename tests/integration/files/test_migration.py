"""file_migration_workflow on the real Temporal dev server, between real providers."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.search import PERCENT
from adx_core.contracts.storage import (
    FILE_MIGRATION_WORKFLOW,
    FileMigrationRequest,
    MigrationResult,
    migration_workflow_id,
)
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry
from tests.integration.files.conftest import SeededTenant, listing, record_providers, seed_tenant


async def start(
    client: Client, settings: Settings, request: FileMigrationRequest
) -> WorkflowHandle[Any, MigrationResult]:
    return await client.start_workflow(
        FILE_MIGRATION_WORKFLOW,
        request,
        id=migration_workflow_id(request.tenant_id),
        task_queue=settings.task_queue("files"),
        result_type=MigrationResult,
    )


async def progress_of(client: Client, workflow_id: str) -> ProgressSnapshot:
    """The latest run's progress (a migration may have continued as new)."""
    latest = client.get_workflow_handle(workflow_id)
    return await latest.query(PROGRESS_QUERY, ProgressQuery(), result_type=ProgressSnapshot)


async def assert_moved(
    stores: StorageRegistry, seeded: SeededTenant, source: str, target: str
) -> None:
    """Every object is on the target with the bytes it had on the source."""
    target_store = stores.get(target)
    moved = await listing(target_store, seeded.prefix)
    assert set(moved) == set(seeded.objects)
    for key, sha256 in seeded.objects.items():
        assert await target_store.checksum(key) == sha256, key


async def test_local_to_s3_moves_every_file_and_reports_progress(
    settings: Settings,
    temporal_client: Client,
    files_worker: Worker,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    seeded = await seed_tenant(owner_engine, stores.get("local"), files=300, unrecorded=5)
    handle = await start(
        temporal_client,
        settings,
        FileMigrationRequest(
            tenant_id=seeded.tenant_id,
            target="s3",
            batch_size=40,
            parallelism=8,
            migration_id=str(uuid.uuid4()),
        ),
    )
    # Progress read during the run only moves forward.
    seen: list[tuple[int, int, int]] = []
    while True:
        snapshot = await progress_of(temporal_client, handle.id)
        seen.append(
            (
                snapshot.percent,
                snapshot.counters.get("files_done", 0),
                snapshot.counters.get("bytes_done", 0),
            )
        )
        if snapshot.step == "completed":
            break
        await asyncio.sleep(0.05)
    result = await handle.result()

    assert seen == sorted(seen)
    assert any(0 < files < 305 for _, files, _ in seen), "no reading caught the copy midway"
    assert seen[-1][0] == 100
    assert (result.source, result.target) == ("local", "s3")
    assert result.files_total == 305
    assert result.files_copied == 305
    assert result.files_skipped == 0
    assert result.records_switched == 300
    assert (
        result.bytes_copied
        == result.bytes_total
        == sum(size for size in (await listing(stores.get("local"), seeded.prefix)).values())
    )
    await assert_moved(stores, seeded, "local", "s3")
    assert await record_providers(owner_engine, seeded.tenant_id) == {"s3": 300}
    # The source stays (delete_source was not asked for); the tenant moved.
    assert len(await listing(stores.get("local"), seeded.prefix)) == 305
    async with owner_engine.connect() as conn:
        provider = await conn.scalar(
            text("SELECT storage_provider FROM tenants WHERE id = :t"),
            {"t": seeded.tenant_id},
        )
        status = await conn.scalar(
            text("SELECT status FROM storage_migrations WHERE tenant_id = :t"),
            {"t": seeded.tenant_id},
        )
    assert provider == "s3"
    assert status == "committed"
    assert await stores.get("s3").prefix_exists(seeded.prefix)
    description = await handle.describe()
    assert description.typed_search_attributes.get(PERCENT) == 100


async def test_s3_to_azure_deletes_the_source_after_the_commit(
    settings: Settings,
    temporal_client: Client,
    files_worker: Worker,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    seeded = await seed_tenant(owner_engine, stores.get("s3"), files=200)
    handle = await start(
        temporal_client,
        settings,
        FileMigrationRequest(
            tenant_id=seeded.tenant_id,
            target="azure",
            batch_size=64,
            delete_source=True,
            migration_id=str(uuid.uuid4()),
        ),
    )
    result = await handle.result()
    assert (result.source, result.target) == ("s3", "azure")
    assert result.files_copied == 203
    assert result.source_deleted == 203
    await assert_moved(stores, seeded, "s3", "azure")
    assert await listing(stores.get("s3"), seeded.prefix) == {}
    assert await record_providers(owner_engine, seeded.tenant_id) == {"azure": 200}


async def test_a_folder_moves_alone_and_the_tenant_stays(
    settings: Settings,
    temporal_client: Client,
    files_worker: Worker,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    seeded = await seed_tenant(owner_engine, stores.get("local"), files=20, unrecorded=6)
    handle = await start(
        temporal_client,
        settings,
        FileMigrationRequest(
            tenant_id=seeded.tenant_id,
            target="gcs",
            prefix="thumbs/",
            migration_id=str(uuid.uuid4()),
        ),
    )
    result = await handle.result()
    assert result.files_total == 6
    assert result.records_switched == 0
    moved = await listing(stores.get("gcs"), seeded.prefix)
    assert set(moved) == {key for key in seeded.objects if "/thumbs/" in key}
    async with owner_engine.connect() as conn:
        provider = await conn.scalar(
            text("SELECT storage_provider FROM tenants WHERE id = :t"),
            {"t": seeded.tenant_id},
        )
    assert provider == "local"  # only a folder moved


async def test_a_large_migration_continues_as_new(
    settings: Settings,
    temporal_client: Client,
    files_worker: Worker,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    seeded = await seed_tenant(owner_engine, stores.get("local"), files=57, unrecorded=0)
    handle = await start(
        temporal_client,
        settings,
        FileMigrationRequest(
            tenant_id=seeded.tenant_id,
            target="s3",
            batch_size=5,
            batches_per_run=3,
            migration_id=str(uuid.uuid4()),
        ),
    )
    result = await handle.result()
    # 12 pages of at most 5, 3 per run.
    assert result.runs == 4
    assert result.files_copied == 57
    assert result.bytes_copied == result.bytes_total > 0
    assert result.records_switched == 57
    await assert_moved(stores, seeded, "local", "s3")
    snapshot = await progress_of(temporal_client, handle.id)
    # Event numbers went on growing across the runs, so SSE resumes without loss.
    assert snapshot.last_seq > 12
    assert [e.seq for e in snapshot.events] == sorted({e.seq for e in snapshot.events})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"parallelism": 100}, "parallelism"),
        ({"fallback_targets": ["gcs", "azure", "local", "s3"]}, "fallback"),
        ({"target_attempts": 0}, "target_attempts"),
        ({"batches_per_run": 0}, "batches_per_run"),
        ({"target": "ftp"}, "unknown storage provider"),
        ({"target": "local"}, "different providers"),
        ({"fallback_targets": ["s3"]}, "different providers"),
        ({"prefix": "../../etc/"}, "bad tenant or prefix"),
        ({"tenant_id": "not-a-tenant"}, "bad tenant or prefix"),
        ({"tenant_id": str(uuid.UUID(int=7))}, "not active"),
    ],
)
async def test_a_bad_request_fails_at_the_start_and_touches_nothing(
    settings: Settings,
    temporal_client: Client,
    files_worker: Worker,
    owner_engine: AsyncEngine,
    change: dict[str, Any],
    reason: str,
    stores: StorageRegistry,
) -> None:
    seeded = await seed_tenant(owner_engine, stores.get("local"), files=2)
    request = dataclasses.replace(
        FileMigrationRequest(
            tenant_id=seeded.tenant_id, target="s3", migration_id=str(uuid.uuid4())
        ),
        **change,
    )
    handle = await start(temporal_client, settings, request)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ActivityError | ApplicationError)
    error = cause.cause if isinstance(cause, ActivityError) else cause
    assert isinstance(error, ApplicationError)
    assert error.type == "InvalidMigration"
    assert reason in str(error)
    assert await listing(stores.get("s3"), seeded.prefix) == {}
    assert await record_providers(owner_engine, seeded.tenant_id) == {"local": 2}
