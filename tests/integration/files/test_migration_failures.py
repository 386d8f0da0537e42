"""A migration that is cancelled, loses its target, or loses its worker."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError

from adx_cli.devstack.net import free_port, is_http_ready
from adx_core.contracts.storage import FileMigrationRequest
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry
from adx_workers.files.worker import build_worker
from adx_workers.resources import WorkerResources
from tests.integration.files.conftest import listing, record_providers, seed_tenant
from tests.integration.files.test_migration import progress_of, start
from tests.support.moto_server import MotoServer
from tests.support.processes import start_worker
from tests.support.storage import with_storage


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def migration_row(owner_engine: AsyncEngine, tenant_id: str) -> tuple[str, str | None]:
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, failure FROM storage_migrations WHERE tenant_id = :t"),
                {"t": tenant_id},
            )
        ).one()
    return row[0], row[1]


async def test_a_cancel_rolls_everything_back(
    settings: Settings,
    temporal_client: Client,
    files_worker: object,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    local = stores.get("local")
    seeded = await seed_tenant(owner_engine, local, files=300, unrecorded=0)
    handle = await start(
        temporal_client,
        settings,
        FileMigrationRequest(
            tenant_id=seeded.tenant_id,
            target="s3",
            batch_size=10,
            parallelism=1,
            migration_id=str(uuid.uuid4()),
        ),
    )

    async def some_switched() -> bool:
        snapshot = await progress_of(temporal_client, handle.id)
        return snapshot.counters.get("records_switched", 0) >= 30

    await wait_until(some_switched, 60, "the first records to switch")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)

    # The target is clean, the records are unchanged, the source is intact.
    assert await listing(stores.get("s3"), seeded.prefix) == {}
    assert await record_providers(owner_engine, seeded.tenant_id) == {"local": 300}
    assert set(await listing(local, seeded.prefix)) == set(seeded.objects)
    for key, sha256 in seeded.objects.items():
        assert await local.checksum(key) == sha256
    assert (await migration_row(owner_engine, seeded.tenant_id))[0] == "rolled_back"
    snapshot = await progress_of(temporal_client, handle.id)
    assert snapshot.step == "cancelled"


async def test_a_target_that_stops_fails_over_to_the_fallback(
    settings: Settings,
    temporal_client: Client,
    resources: WorkerResources,
    owner_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    """The primary target (its own S3 server) is stopped mid-run; the migration moves on to
    Azure and completes there, and says which target it used."""
    primary = MotoServer(tmp_path / "moto-primary")
    primary.start()
    try:
        own = with_storage(settings, primary.env("primary"))
        stores = StorageRegistry(own)
        await stores.get("s3").ensure_container()
        worker = build_worker(
            temporal_client,
            dataclasses.replace(resources, settings=own, stores=stores),
            own.task_queue("files"),
        )
        async with worker:
            local = stores.get("local")
            seeded = await seed_tenant(owner_engine, local, files=200)
            handle = await start(
                temporal_client,
                own,
                FileMigrationRequest(
                    tenant_id=seeded.tenant_id,
                    target="s3",
                    fallback_targets=["azure"],
                    batch_size=10,
                    parallelism=2,
                    target_attempts=2,
                    migration_id=str(uuid.uuid4()),
                ),
            )

            async def some_switched() -> bool:
                snapshot = await progress_of(temporal_client, handle.id)
                return snapshot.counters.get("records_switched", 0) >= 20

            await wait_until(some_switched, 60, "the first records to switch")
            primary.stop()
            result = await handle.result()

        assert result.target == "azure"
        assert [f.target for f in result.failed_targets] == ["s3"]
        assert "s3" in result.failed_targets[0].cause or result.failed_targets[0].cause
        # The dead target could not be cleaned: what it holds is counted, not forgotten.
        assert result.failed_targets[0].orphaned_copies > 0
        assert result.files_copied == 203
        assert result.records_switched == 200
        azure = stores.get("azure")
        assert set(await listing(azure, seeded.prefix)) == set(seeded.objects)
        for key, sha256 in seeded.objects.items():
            assert await azure.checksum(key) == sha256
        assert await record_providers(owner_engine, seeded.tenant_id) == {"azure": 200}
        async with owner_engine.connect() as conn:
            used = await conn.scalar(
                text("SELECT target_used FROM storage_migrations WHERE tenant_id = :t"),
                {"t": seeded.tenant_id},
            )
        assert used == "azure"
        await stores.close()
    finally:
        primary.stop()


async def test_a_sigkilled_worker_copies_nothing_twice_and_loses_nothing(
    settings: Settings, temporal_client: Client, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    """S3 to local, the worker in its own process, killed with SIGKILL in the middle of a
    batch. Every local write is a new file renamed into place, so a copy made twice would
    show as a new inode: the files already copied when the kill landed keep theirs."""
    stores = StorageRegistry(settings)
    first = start_worker(settings, "files", free_port(), tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        seeded = await seed_tenant(owner_engine, stores.get("s3"), files=300, size=60_000)
        handle = await start(
            temporal_client,
            settings,
            FileMigrationRequest(
                tenant_id=seeded.tenant_id,
                target="local",
                batch_size=100,
                parallelism=2,
                migration_id=str(uuid.uuid4()),
            ),
        )

        async def verified() -> int:
            async with owner_engine.connect() as conn:
                count = await conn.scalar(
                    text(
                        "SELECT count(*) FROM storage_migration_items"
                        " WHERE tenant_id = :t AND state = 'verified'"
                    ),
                    {"t": seeded.tenant_id},
                )
            return int(count or 0)

        async def inside_first_batch() -> bool:
            return await verified() >= 20

        await wait_until(inside_first_batch, 60, "the first copies")
        first.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
        done_at_kill = await verified()
        assert 0 < done_at_kill < 300, "the kill did not land mid-migration"
        root = settings.storage_root
        inodes = {
            key: (root / key).stat().st_ino for key in seeded.objects if (root / key).exists()
        }

        port = free_port()
        second = start_worker(settings, "files", port, tmp_path / "worker-2.log")
        await wait_until(
            lambda: asyncio.to_thread(is_http_ready, f"http://127.0.0.1:{port}/readyz"),
            30,
            "the second worker",
        )
        result = await asyncio.wait_for(handle.result(), 120)

        local = stores.get("local")
        assert set(await listing(local, seeded.prefix)) == set(seeded.objects)
        for key, sha256 in seeded.objects.items():
            assert await local.checksum(key) == sha256, key
        rewritten = [key for key, inode in inodes.items() if (root / key).stat().st_ino != inode]
        # Only a copy that was in flight at the kill (at most `parallelism` of them, and
        # only if its bytes had not all landed) may be written again.
        assert len(rewritten) <= 2, rewritten
        assert result.files_copied + result.files_skipped == 303
        assert await record_providers(owner_engine, seeded.tenant_id) == {"local": 300}
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 30)
        await stores.close()
