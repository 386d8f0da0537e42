"""A failure or a cancel anywhere in tenant provisioning undoes the completed steps.

Each step's activity is replaced, in turn, by one that fails permanently. Afterwards the
tenant is on record as ``failed`` with that step and its cause, and nothing else of it is
left: no quotas, permissions, membership or identity, no storage, no running monitoring.
"""

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
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from adx_core.contracts.monitoring import monitoring_workflow_id
from adx_core.contracts.notifications import SEND_NOTIFICATION_ACTIVITY
from adx_core.contracts.tenants import (
    ACTIVATE_TENANT_ACTIVITY,
    CREATE_ADMIN_USER_ACTIVITY,
    CREATE_TENANT_RECORD_ACTIVITY,
    CREATE_TENANT_STORAGE_ACTIVITY,
    SETUP_TENANT_DATABASE_ACTIVITY,
    VALIDATE_TENANT_REQUEST_ACTIVITY,
    ActivateTenantInput,
    ActivateTenantResult,
)
from adx_core.settings import Settings
from adx_workers.resources import WorkerResources
from adx_workers.tenants.activities import TenantActivities
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import (
    BODY,
    auth,
    read_events,
    wait_for_status,
    wait_for_step,
)
from tests.support.mail import Mailbox
from tests.support.workers import WorkerFactory

Client = TestClient[web.Request, web.Application]


def failing(activity_name: str) -> Callable[..., Any]:
    @activity.defn(name=activity_name)
    async def fail(request: Any) -> Any:
        raise ApplicationError(f"injected failure in {activity_name}", non_retryable=True)

    return fail


# step name (as reported) → the activity that fails, and what the tenant row looks like.
STEPS = {
    "validate_request": VALIDATE_TENANT_REQUEST_ACTIVITY,
    "create_tenant_record": CREATE_TENANT_RECORD_ACTIVITY,
    "setup_database": SETUP_TENANT_DATABASE_ACTIVITY,
    "setup_storage": CREATE_TENANT_STORAGE_ACTIVITY,
    "create_admin_user": CREATE_ADMIN_USER_ACTIVITY,
    "send_welcome_notification": SEND_NOTIFICATION_ACTIVITY,
    "activate_tenant": ACTIVATE_TENANT_ACTIVITY,
}


async def leftovers(owner_engine: AsyncEngine) -> dict[str, Any]:
    async with owner_engine.connect() as conn:
        tenant = (
            await conn.execute(text("SELECT id, status, failure FROM tenants WHERE slug = 'acme'"))
        ).all()
        counts = {
            table: await conn.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in (
                "tenant_quotas",
                "tenant_role_permissions",
                "memberships",
                "users",
                "invitations",
                "auth_sessions",
            )
        }
    return {"tenant": tenant, **counts}


async def monitoring_status(client: TemporalClient, tenant_id: str) -> Any:
    try:
        description = await client.get_workflow_handle(monitoring_workflow_id(tenant_id)).describe()
    except RPCError:
        return None  # never started
    return description.status


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_failed_step_leaves_only_the_failure_on_record(
    step: str,
    api: Client,
    token: TokenFactory,
    worker_with: WorkerFactory,
    owner_engine: AsyncEngine,
    settings: Settings,
    temporal_client: TemporalClient,
    mailbox: Mailbox,
) -> None:
    async with worker_with(failing(STEPS[step])):
        admin = token()
        response = await api.post("/v1/tenants", json=BODY, headers=auth(admin))
        assert response.status == 202
        final = await wait_for_status(api, admin, response.headers["Location"])
        events = await read_events(await api.get(final["links"]["events"], headers=auth(admin)))
        tenant_id = final["id"].removeprefix("tenant-provisioning-")
        # The monitoring child, if it started, has been told to stop by the rollback.
        for _ in range(50):
            status = await monitoring_status(temporal_client, tenant_id)
            if status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)

    assert final["status"] == "failed"
    assert final["error"]["step"] == step
    assert f"injected failure in {STEPS[step]}" in final["error"]["detail"]
    assert "Traceback" not in str(final["error"])
    left = await leftovers(owner_engine)
    if step in ("validate_request", "create_tenant_record"):
        assert left["tenant"] == []  # nothing was ever recorded
    else:
        ((_, status, failure),) = left["tenant"]
        assert status == "failed"
        assert failure["step"] == step
        assert f"injected failure in {STEPS[step]}" in failure["cause"]
    assert {k: v for k, v in left.items() if k != "tenant"} == dict.fromkeys(
        ("tenant_quotas", "tenant_role_permissions", "memberships", "users"), 0
    ) | {"invitations": 0, "auth_sessions": 0}
    assert not (settings.storage_root / f"tenants/{tenant_id}").exists()
    assert status_is_not_running(await monitoring_status(temporal_client, tenant_id))
    phases = [(data.get("phase"), data.get("step")) for _, kind, data in events if kind == "step"]
    assert ("step_failed", step) in phases
    assert events[-1][1] == "failed"
    # The slug is free again: a new attempt may use it.
    async with worker_with():
        retry = await api.post(
            "/v1/tenants", json=BODY, headers={**auth(admin), "Prefer": "wait=20"}
        )
        assert retry.status == 200, await retry.text()
        assert (await retry.json())["status"] == "succeeded"


def status_is_not_running(status: Any) -> bool:
    return status != WorkflowExecutionStatus.RUNNING


@activity.defn(name=ACTIVATE_TENANT_ACTIVITY)
async def activation_hangs(request: ActivateTenantInput) -> ActivateTenantResult:
    while True:  # until the cancel reaches it through the heartbeat
        activity.heartbeat()
        await asyncio.sleep(0.2)


def slow_activation(resources: WorkerResources) -> Callable[..., Any]:
    real = TenantActivities(resources.sessions, resources.storage)

    @activity.defn(name=ACTIVATE_TENANT_ACTIVITY)
    async def activate(request: ActivateTenantInput) -> ActivateTenantResult:
        """Does not heartbeat, so it never hears of the cancel: it really activates."""
        await asyncio.sleep(1.5)
        return await real.activate_tenant(request)

    return activate


@pytest.mark.parametrize(
    "make_activation",
    [lambda _: activation_hangs, slow_activation],
    ids=["step-acknowledges-the-cancel", "step-succeeds-anyway"],
)
async def test_cancel_mid_run_runs_the_compensation(
    make_activation: Callable[[WorkerResources], Callable[..., Any]],
    resources: WorkerResources,
    api: Client,
    token: TokenFactory,
    settings: Settings,
    worker_with: WorkerFactory,
    owner_engine: AsyncEngine,
) -> None:
    async with worker_with(make_activation(resources)):
        admin = token()
        response = await api.post("/v1/tenants", json=BODY, headers=auth(admin))
        location = response.headers["Location"]
        operation = await wait_for_step(api, admin, location, "activate_tenant")
        tenant_id = operation["id"].removeprefix("tenant-provisioning-")
        prefix = settings.storage_root / f"tenants/{tenant_id}"
        assert prefix.is_dir()

        cancel = await api.post(operation["links"]["cancel"], headers=auth(admin))
        assert cancel.status == 202
        final = await wait_for_status(api, admin, location)
        again = await api.post(operation["links"]["cancel"], headers=auth(admin))

    assert final["status"] == "cancelled", final["error"]
    left = await leftovers(owner_engine)
    ((_, status, failure),) = left["tenant"]
    assert (status, failure) == ("failed", {"step": "activate_tenant", "cause": "cancelled"})
    assert left["memberships"] == left["tenant_quotas"] == left["users"] == 0
    assert not prefix.exists()
    assert again.status == 409
