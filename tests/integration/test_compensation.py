"""A failure or a cancel in the middle of tenant provisioning undoes the completed steps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.contracts.tenants import (
    ACTIVATE_TENANT_ACTIVITY,
    CREATE_TENANT_STORAGE_ACTIVITY,
    ActivateTenantInput,
    ActivateTenantResult,
    TenantStorageInput,
    TenantStorageResult,
)
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import (
    BODY,
    auth,
    read_events,
    wait_for_status,
    wait_for_step,
)
from tests.support.workers import WorkerFactory

Client = TestClient[web.Request, web.Application]


@activity.defn(name=CREATE_TENANT_STORAGE_ACTIVITY)
async def storage_is_down(request: TenantStorageInput) -> TenantStorageResult:
    raise ApplicationError("the storage provider refused the bucket", non_retryable=True)


@activity.defn(name=ACTIVATE_TENANT_ACTIVITY)
async def activation_hangs(request: ActivateTenantInput) -> ActivateTenantResult:
    while True:  # until the cancel reaches it through the heartbeat
        activity.heartbeat()
        await asyncio.sleep(0.2)


async def tenant_rows(owner_engine: AsyncEngine) -> int:
    async with owner_engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM tenants WHERE slug = 'acme'")) or 0)


async def test_failed_step_rolls_back_the_tenant_record(
    api: Client, token: TokenFactory, worker_with: WorkerFactory, owner_engine: AsyncEngine
) -> None:
    async with worker_with(storage_is_down):
        admin = token()
        response = await api.post("/v1/tenants", json=BODY, headers=auth(admin))
        assert response.status == 202
        final = await wait_for_status(api, admin, response.headers["Location"])
        events = await read_events(await api.get(final["links"]["events"], headers=auth(admin)))

    assert final["status"] == "failed"
    assert final["error"]["step"] == "create_tenant_storage"
    assert "refused the bucket" in final["error"]["detail"]
    assert "Traceback" not in str(final["error"])
    assert await tenant_rows(owner_engine) == 0
    phases = [(data.get("phase"), data.get("step")) for _, kind, data in events if kind == "step"]
    assert ("step_failed", "create_tenant_storage") in phases
    assert phases[-2:] == [
        ("compensating", "create_tenant_storage"),
        ("compensating", "create_tenant_record"),
    ]
    assert events[-1][1] == "failed"


@activity.defn(name=ACTIVATE_TENANT_ACTIVITY)
async def slow_activation(request: ActivateTenantInput) -> ActivateTenantResult:
    """Does not heartbeat, so it never hears of the cancel and finishes its work."""
    await asyncio.sleep(1.5)
    return ActivateTenantResult(activated=True)


@pytest.mark.parametrize(
    "activation",
    [activation_hangs, slow_activation],
    ids=["step-acknowledges-the-cancel", "step-succeeds-anyway"],
)
async def test_cancel_mid_run_runs_the_compensation(
    activation: Callable[..., Any],
    api: Client,
    token: TokenFactory,
    settings: Settings,
    worker_with: WorkerFactory,
    owner_engine: AsyncEngine,
) -> None:
    async with worker_with(activation):
        admin = token()
        response = await api.post("/v1/tenants", json=BODY, headers=auth(admin))
        location = response.headers["Location"]
        operation = await wait_for_step(api, admin, location, "activate_tenant")
        assert await tenant_rows(owner_engine) == 1
        tenant_id = operation["id"].removeprefix("tenant-provisioning-")
        prefix = settings.storage_root / f"tenants/{tenant_id}"
        assert prefix.is_dir()

        cancel = await api.post(operation["links"]["cancel"], headers=auth(admin))
        assert cancel.status == 202
        final = await wait_for_status(api, admin, location)
        again = await api.post(operation["links"]["cancel"], headers=auth(admin))

    assert final["status"] == "cancelled", final["error"]
    assert await tenant_rows(owner_engine) == 0
    assert not prefix.exists()
    assert again.status == 409
