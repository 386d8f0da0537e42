"""Migration tests: settings with every provider configured (local in a temp dir, S3 on
moto, Azure on Azurite, GCS on its emulator), each test in buckets of its own; a tenant;
and files seeded on a source with their records."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.settings import Settings
from adx_core.storage import StorageProvider, StorageRegistry, tenant_prefix
from adx_workers.files.worker import build_worker
from adx_workers.resources import WorkerResources
from tests.support.storage import StorageServer, with_storage


def fresh_bucket() -> str:
    return f"adx-{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def settings(
    settings: Settings,
    s3_server: StorageServer,
    azure_server: StorageServer,
    gcs_server: StorageServer,
) -> Settings:
    configured = with_storage(
        settings,
        {
            **s3_server.env(fresh_bucket()),
            **azure_server.env(fresh_bucket()),
            **gcs_server.env(fresh_bucket()),
        },
    )
    stores = StorageRegistry(configured)
    try:
        for kind in configured.storage_kinds:
            await stores.get(kind).ensure_container()
    finally:
        await stores.close()
    return configured


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[StorageRegistry]:
    """The test's own clients of every provider, to seed and inspect the buckets."""
    registry = StorageRegistry(settings)
    yield registry
    await registry.close()


@pytest.fixture
async def files_worker(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> AsyncIterator[Worker]:
    worker = build_worker(temporal_client, resources, settings.task_queue("files"))
    async with worker:
        yield worker


@dataclass
class SeededTenant:
    tenant_id: str
    # key -> sha256 of every object seeded under the tenant's prefix
    objects: dict[str, str]
    # keys that have a file record
    recorded: list[str]

    @property
    def prefix(self) -> str:
        return tenant_prefix(self.tenant_id)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def seed_tenant(
    owner_engine: AsyncEngine,
    store: StorageProvider,
    *,
    files: int,
    size: int = 2048,
    unrecorded: int = 3,
    tenant_id: str | None = None,
) -> SeededTenant:
    """An active tenant whose files live on ``store``: ``files`` objects with records, and
    ``unrecorded`` more without (derived objects such as thumbnails). With ``tenant_id``,
    the files go to that tenant, provisioned elsewhere (by the operator's tests)."""
    if tenant_id is not None:
        return await _seed_files(owner_engine, store, tenant_id, files, size, unrecorded)
    tenant_id = str(uuid.uuid4())
    prefix = tenant_prefix(tenant_id)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix,"
                " storage_provider) VALUES (:id, :slug, 'Moving Co', 'pro', 'active', :prefix,"
                " :provider)"
            ),
            {
                "id": tenant_id,
                "slug": f"m-{tenant_id[:8]}",
                "prefix": prefix,
                "provider": store.name,
            },
        )
    return await _seed_files(owner_engine, store, tenant_id, files, size, unrecorded)


async def _seed_files(
    owner_engine: AsyncEngine,
    store: StorageProvider,
    tenant_id: str,
    files: int,
    size: int,
    unrecorded: int,
) -> SeededTenant:
    prefix = tenant_prefix(tenant_id)
    await store.ensure_prefix(prefix)
    objects: dict[str, str] = {}
    recorded: list[str] = []
    rows = []
    for i in range(files + unrecorded):
        file_id = uuid.uuid4()
        data = hashlib.sha256(f"{tenant_id}/{i}".encode()).digest() * (size // 32 + 1)
        data = data[: size + i % 7]
        key = f"{prefix}files/{file_id}" if i < files else f"{prefix}thumbs/{file_id}.png"
        info = await store.put(key, _chunks(data))
        objects[key] = info.sha256 or ""
        if i < files:
            recorded.append(key)
            rows.append(
                {
                    "id": file_id,
                    "tenant": tenant_id,
                    "name": f"file-{i}.bin",
                    "size": len(data),
                    "sha": info.sha256,
                    "provider": store.name,
                    "key": key,
                }
            )
    async with owner_engine.begin() as conn:
        if rows:
            await conn.execute(
                text(
                    "INSERT INTO files (id, tenant_id, name, content_type, size_bytes,"
                    " checksum_sha256, storage_provider, storage_key, status) VALUES (:id,"
                    " :tenant, :name, 'application/octet-stream', :size, :sha, :provider,"
                    " :key, 'ready')"
                ),
                rows,
            )
    return SeededTenant(tenant_id=tenant_id, objects=objects, recorded=recorded)


async def record_providers(owner_engine: AsyncEngine, tenant_id: str) -> dict[str, int]:
    async with owner_engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT storage_provider, count(*) FROM files WHERE tenant_id = :t"
                " GROUP BY storage_provider"
            ),
            {"t": tenant_id},
        )
        return {provider: int(count) for provider, count in result.all()}


async def listing(store: StorageProvider, prefix: str) -> dict[str, int]:
    """Every object under the prefix but the prefix marker, with its size."""
    return {
        info.key: info.size
        async for info in store.iterate(prefix)
        if not info.key.endswith(".adx-prefix")
    }
