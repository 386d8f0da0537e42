"""StorageMigration resources: progress mirrored into status while the files move, and a
delete in the middle cancels the migration, which rolls it back before the finalizer goes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from adx_core.contracts.storage import COPY_BATCH_ACTIVITY, BatchResult, CopyBatch
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry, tenant_prefix
from adx_workers.files.migration_activities import MigrationActivities
from adx_workers.resources import WorkerResources
from tests.integration.files.conftest import fresh_bucket, listing, record_providers, seed_tenant
from tests.operator.conftest import (
    MIGRATIONS,
    TENANTS,
    OperatorFactory,
    conditions,
    phase,
    tenant_manifest,
    wait_for,
)
from tests.support.kube import KubeHandle
from tests.support.storage import StorageServer, with_storage
from tests.support.workers import files_worker_with


@pytest.fixture
async def settings(settings: Settings, s3_server: StorageServer) -> Settings:
    """Local (the default for new tenants) and S3 on moto, in a bucket of this test's own."""
    configured = with_storage(settings, s3_server.env(fresh_bucket()))
    stores = StorageRegistry(configured)
    try:
        await stores.get("s3").ensure_container()
    finally:
        await stores.close()
    return configured


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[StorageRegistry]:
    registry = StorageRegistry(settings)
    yield registry
    await registry.close()


def slow_batches(resources: WorkerResources, seconds: float) -> Callable[..., Any]:
    """The migration's copy step, each batch held for ``seconds`` (it heartbeats, so a
    cancel reaches it): long enough to see the migration midway."""
    real = MigrationActivities(resources.sessions, resources.stores)

    @activity.defn(name=COPY_BATCH_ACTIVITY)
    async def copy_batch(batch: CopyBatch) -> BatchResult:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            activity.heartbeat()
            await asyncio.sleep(0.05)
        return await real.copy_batch(batch)

    return copy_batch


def migration_manifest(tenant: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "adx.dev/v1alpha1",
        "kind": "StorageMigration",
        "metadata": {"name": f"{tenant}-to-s3", "namespace": "default"},
        "spec": {"tenantRef": {"name": tenant}, "target": "s3", "batchSize": 2, **spec},
    }


async def ready_tenant(
    kube: KubeHandle, owner_engine: AsyncEngine, stores: StorageRegistry, files: int
) -> tuple[str, str]:
    created = await kube.apply(tenant_manifest())
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Ready")
    await seed_tenant(owner_engine, stores.get("local"), files=files, unrecorded=0, tenant_id=uid)
    return name, uid


async def migration_status(owner_engine: AsyncEngine, tenant_id: str) -> str | None:
    async with owner_engine.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM storage_migrations WHERE tenant_id = :t"), {"t": tenant_id}
        )
    return None if status is None else str(status)


def files_done(obj: dict[str, Any] | None) -> int:
    return int(((obj or {}).get("status") or {}).get("progress", {}).get("filesDone", 0))


async def test_progress_shows_in_status_until_it_succeeds(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: Worker,
    resources: WorkerResources,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    files = files_worker_with(
        temporal_client, resources, settings.task_queue("files"), [slow_batches(resources, 0.4)]
    )
    async with files:
        operator = operators()
        await operator.ready()
        tenant, uid = await ready_tenant(kube, owner_engine, stores, files=10)
        migration = await kube.apply(migration_manifest(tenant))
        name = migration["metadata"]["name"]

        midway = await wait_for(
            kube,
            MIGRATIONS,
            "default",
            name,
            lambda o: phase(o) == "Running" and 0 < files_done(o) < 10,
            what="progress midway",
        )
        assert midway is not None
        assert midway["status"]["tenantId"] == uid
        assert midway["status"]["progress"]["filesTotal"] == 10
        assert conditions(midway)["Ready"] == ("False", "Running")

        done = await wait_for(
            kube, MIGRATIONS, "default", name, lambda o: phase(o) == "Succeeded", what="success"
        )
        assert done is not None
        progress = done["status"]["progress"]
        assert progress["filesDone"] == progress["filesTotal"] == 10
        assert progress["bytesDone"] == progress["bytesTotal"] > 0
        assert conditions(done)["Ready"] == ("True", "Succeeded")
        assert conditions(done)["Finished"] == ("True", "Succeeded")
        assert await record_providers(owner_engine, uid) == {"s3": 10}
        assert await migration_status(owner_engine, uid) == "committed"
        # The migration row is the resource's: its id is the resource's uid.
        assert done["status"]["workflowId"] == f"file-migration-{uid}"

        await kube.delete(MIGRATIONS, "default", name)
        await wait_for(kube, MIGRATIONS, "default", name, lambda o: o is None, what="deletion")
        assert await record_providers(owner_engine, uid) == {"s3": 10}, "a finished one stays"


async def test_a_delete_midway_cancels_and_rolls_back(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: Worker,
    resources: WorkerResources,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    files = files_worker_with(
        temporal_client, resources, settings.task_queue("files"), [slow_batches(resources, 0.5)]
    )
    async with files:
        operator = operators()
        await operator.ready()
        tenant, uid = await ready_tenant(kube, owner_engine, stores, files=12)
        migration = await kube.apply(migration_manifest(tenant))
        name = migration["metadata"]["name"]
        running = await wait_for(
            kube,
            MIGRATIONS,
            "default",
            name,
            lambda o: phase(o) == "Running" and files_done(o) >= 2,
            what="the first batch",
        )
        assert running is not None
        run_id = running["status"]["runId"]

        await kube.delete(MIGRATIONS, "default", name)
        # The finalizer holds the resource while the workflow rolls back.
        held = await kube.get(MIGRATIONS, "default", name)
        assert held is not None
        assert held["metadata"].get("deletionTimestamp")
        await wait_for(kube, MIGRATIONS, "default", name, lambda o: o is None, what="release")

        handle = temporal_client.get_workflow_handle(f"file-migration-{uid}", run_id=run_id)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        assert await record_providers(owner_engine, uid) == {"local": 12}
        assert await migration_status(owner_engine, uid) == "rolled_back"
        assert await listing(stores.get("s3"), tenant_prefix(uid)) == {}
        assert len(await listing(stores.get("local"), tenant_prefix(uid))) == 12


async def test_a_migration_waits_for_its_tenant_and_refuses_unknown_providers(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: Worker,
) -> None:
    operator = operators()
    await operator.ready()
    waiting = await kube.apply(migration_manifest("no-such-tenant"))
    pending = await wait_for(
        kube,
        MIGRATIONS,
        "default",
        waiting["metadata"]["name"],
        lambda o: phase(o) == "Pending",
    )
    assert pending is not None
    assert conditions(pending)["TenantReady"][0] == "False"
    assert conditions(pending)["Ready"] == ("False", "WaitingForTenant")
    # Valid for the CRD, but this deployment has no GCS configured.
    refused = await kube.apply(
        {**migration_manifest("no-such-tenant", target="gcs"), "metadata": {"name": "to-gcs"}}
    )
    failed = await wait_for(
        kube, MIGRATIONS, "default", refused["metadata"]["name"], lambda o: phase(o) == "Failed"
    )
    assert failed is not None
    assert failed["status"]["failure"]["reason"] == "InvalidSpec"
    assert "gcs" in failed["status"]["failure"]["message"]
    # Deleting one that never started releases it at once.
    await kube.delete(MIGRATIONS, "default", "to-gcs")
    await wait_for(kube, MIGRATIONS, "default", "to-gcs", lambda o: o is None)
