"""tenant_monitoring_workflow with its real activities on the real dev server: the usage it
measures in PostgreSQL (under RLS) and storage, the row it writes, the metrics it sets and
the alert it raises."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle

from adx_core.contracts.monitoring import (
    STATUS_QUERY,
    STOP_SIGNAL,
    TENANT_MONITORING_WORKFLOW,
    MonitoringResult,
    MonitoringStatus,
    ResourceAmounts,
    TenantMonitoringData,
    monitoring_workflow_id,
)
from adx_core.settings import Settings
from adx_core.storage import LocalStorage, tenant_prefix
from adx_workers.resources import WorkerResources
from tests.integration.monitoring.conftest import WatchedTenant, monitoring_worker
from tests.support.mail import Mailbox


async def first_sample(handle: WorkflowHandle[Any, Any], within: float = 20.0) -> MonitoringStatus:
    deadline = time.monotonic() + within
    while True:
        status: MonitoringStatus = await handle.query(STATUS_QUERY, result_type=MonitoringStatus)
        if status.last_sample is not None:
            return status
        assert time.monotonic() < deadline, "no usage sample in time"
        await asyncio.sleep(0.1)


async def add_files(owner_engine: AsyncEngine, tenant_id: str, statuses: list[str]) -> None:
    async with owner_engine.begin() as conn:
        for status in statuses:
            await conn.execute(
                text(
                    "INSERT INTO files (id, tenant_id, name, content_type, size_bytes, "
                    "storage_key, status) VALUES (CAST(:id AS uuid), CAST(:t AS uuid), 'f.bin', "
                    "'application/octet-stream', 1, 'k', :status)"
                ),
                {"id": str(uuid.uuid4()), "t": tenant_id, "status": status},
            )


async def add_other_tenant(owner_engine: AsyncEngine) -> str:
    """A neighbour with rows of its own, which RLS must keep out of the counts."""
    other = str(uuid.uuid4())
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix) "
                "VALUES (CAST(:id AS uuid), 'neighbour', 'Neighbour', 'free', 'active', :p)"
            ),
            {"id": other, "p": f"tenants/{other}/"},
        )
    await add_files(owner_engine, other, ["ready"] * 5)
    return other


def gauge(name: str, tenant_id: str, resource: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"tenant_id": tenant_id, "resource": resource})


async def test_real_usage_is_measured_recorded_and_alerted(
    settings: Settings,
    temporal_client: Client,
    resources: WorkerResources,
    watched_tenant: WatchedTenant,
    owner_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    tenant_id = watched_tenant.tenant_id
    await add_files(owner_engine, tenant_id, ["ready", "ready", "ready", "deleted"])
    other = await add_other_tenant(owner_engine)
    storage = resources.storage
    assert isinstance(storage, LocalStorage)
    await storage.ensure_prefix(tenant_prefix(tenant_id))
    folder = storage.root / tenant_prefix(tenant_id)
    (folder / "a.bin").write_bytes(b"a" * 300)
    (folder / "nested").mkdir()
    (folder / "nested" / "b.bin").write_bytes(b"b" * 550)
    await storage.ensure_prefix(tenant_prefix(other))
    (storage.root / tenant_prefix(other) / "big.bin").write_bytes(b"x" * 5000)

    task_queue = settings.task_queue("tenants")
    async with monitoring_worker(temporal_client, resources, task_queue):
        handle = await temporal_client.start_workflow(
            TENANT_MONITORING_WORKFLOW,
            TenantMonitoringData(tenant_id=tenant_id, interval_seconds=3600),
            id=monitoring_workflow_id(tenant_id),
            task_queue=task_queue,
            result_type=MonitoringResult,
        )
        status = await first_sample(handle)
        # 850 of 1000 bytes crosses 80%: the admin hears of it once.
        mail = await asyncio.to_thread(mailbox.wait_for, watched_tenant.admin_email)
        await handle.signal(STOP_SIGNAL)
        result = await handle.result()

    assert status.last_sample is not None
    # files: the deleted one does not count; users: one membership; db_rows: 4 files + 1
    # membership (quotas, usage and alerts are bookkeeping, the neighbour is invisible).
    assert status.last_sample.usage == ResourceAmounts(
        storage_bytes=850, files=3, users=1, db_rows=5
    )
    assert status.last_sample.quotas == ResourceAmounts(
        storage_bytes=1000, files=4, users=5, db_rows=100
    )
    assert [(a.resource, a.threshold_percent) for a in status.active_alerts] == [
        ("storage_bytes", 80)
    ]
    assert result.reason == "stopped"
    assert result.ticks == 1
    assert mail[0]["Subject"] == "Watched Inc: storage_bytes at 85% of its quota"

    async with owner_engine.connect() as conn:
        usage = (
            await conn.execute(
                text(
                    "SELECT storage_bytes, files, users, db_rows FROM tenant_usage "
                    "WHERE tenant_id = CAST(:t AS uuid)"
                ),
                {"t": tenant_id},
            )
        ).one()
        alerts = (
            await conn.execute(
                text("SELECT resource, threshold_percent, usage, quota, state FROM tenant_alerts")
            )
        ).all()
    assert tuple(usage) == (850, 3, 1, 5)
    assert [tuple(a) for a in alerts] == [("storage_bytes", 80, 850, 1000, "raised")]
    assert gauge("adx_tenant_usage", tenant_id, "storage_bytes") == 850
    assert gauge("adx_tenant_quota_ratio", tenant_id, "files") == 0.75
    assert (
        REGISTRY.get_sample_value(
            "adx_tenant_alerts_total",
            {"resource": "storage_bytes", "threshold": "80", "state": "raised"},
        )
        or 0
    ) >= 1


async def test_a_deprovisioned_tenant_ends_monitoring(
    settings: Settings,
    temporal_client: Client,
    resources: WorkerResources,
    watched_tenant: WatchedTenant,
    owner_engine: AsyncEngine,
) -> None:
    tenant_id = watched_tenant.tenant_id
    task_queue = settings.task_queue("tenants")
    async with monitoring_worker(temporal_client, resources, task_queue):
        handle = await temporal_client.start_workflow(
            TENANT_MONITORING_WORKFLOW,
            TenantMonitoringData(tenant_id=tenant_id, interval_seconds=10),
            id=monitoring_workflow_id(tenant_id),
            task_queue=task_queue,
            result_type=MonitoringResult,
        )
        await first_sample(handle)
        assert gauge("adx_tenant_usage", tenant_id, "users") == 1
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("UPDATE tenants SET status = 'deprovisioned' WHERE id = CAST(:t AS uuid)"),
                {"t": tenant_id},
            )
        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.reason == "tenant_gone"
    assert result.ticks == 2
    # A gone tenant's series are dropped rather than left frozen at their last value.
    assert gauge("adx_tenant_usage", tenant_id, "users") is None


async def test_a_missing_tenant_ends_monitoring_at_once(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> None:
    tenant_id = str(uuid.uuid4())
    task_queue = settings.task_queue("tenants")
    async with monitoring_worker(temporal_client, resources, task_queue):
        result = await temporal_client.execute_workflow(
            TENANT_MONITORING_WORKFLOW,
            TenantMonitoringData(tenant_id=tenant_id),
            id=monitoring_workflow_id(tenant_id),
            task_queue=task_queue,
            result_type=MonitoringResult,
        )
    assert result == MonitoringResult(tenant_id=tenant_id, reason="tenant_gone", ticks=1, runs=1)
