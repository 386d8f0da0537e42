"""The vertical slice through HTTP: POST /v1/tenants, then the operation and its events."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from adx_core.contracts.plans import PLANS, Plan
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.support.mail import Mailbox

Client = TestClient[web.Request, web.Application]

BODY = {
    "slug": "acme",
    "display_name": "Acme Inc",
    "plan": "pro",
    "admin": {"email": "ada@acme.test", "name": "Ada"},
}


PHASES = ("step_started", "step_finished")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_for_status(
    api: Client, token: str, location: str, within: float = 30
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await api.get(location, headers=auth(token))
        assert response.status == 200
        operation: dict[str, Any] = await response.json()
        if operation["status"] in ("succeeded", "failed", "cancelled"):
            return operation
        assert asyncio.get_running_loop().time() < deadline, operation
        await asyncio.sleep(0.2)


async def wait_for_step(
    api: Client, token: str, location: str, step: str, within: float = 30
) -> dict[str, Any]:
    """Poll the operation until the workflow reports ``step`` as its current step."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        operation: dict[str, Any] = await (await api.get(location, headers=auth(token))).json()
        if operation["progress"]["step"] == step:
            return operation
        assert asyncio.get_running_loop().time() < deadline, operation
        await asyncio.sleep(0.05)


async def test_create_tenant_end_to_end(
    api: Client,
    token: TokenFactory,
    tenants_worker: Worker,
    owner_engine: AsyncEngine,
    settings: Settings,
    mailbox: Mailbox,
    temporal_client: TemporalClient,
) -> None:
    admin = token()
    response = await api.post("/v1/tenants", json=BODY, headers=auth(admin))
    assert response.status == 202, await response.text()
    operation = await response.json()
    location = response.headers["Location"]
    assert location == f"/v1/operations/{operation['id']}"
    assert operation["type"] == "tenant_provisioning_workflow"
    assert operation["status"] in ("pending", "running")
    assert set(operation["links"]) == {"self", "events", "cancel", "result"}

    final = await wait_for_status(api, admin, location)
    assert final["status"] == "succeeded", final
    assert final["progress"]["percent"] == 100
    tenant = final["result"]
    assert tenant["slug"] == "acme"
    assert tenant["status"] == "active"
    assert tenant["storage_prefix"] == f"tenants/{tenant['tenant_id']}/"

    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT slug, status, plan FROM tenants WHERE id = CAST(:id AS uuid)"),
                {"id": tenant["tenant_id"]},
            )
        ).one()
        actions = (
            (
                await conn.execute(
                    text(
                        "SELECT action FROM audit_log "
                        "WHERE tenant_id = CAST(:id AS uuid) ORDER BY id"
                    ),
                    {"id": tenant["tenant_id"]},
                )
            )
            .scalars()
            .all()
        )
        quotas = (
            await conn.execute(
                text(
                    "SELECT users, features FROM tenant_quotas WHERE tenant_id = CAST(:id AS uuid)"
                ),
                {"id": tenant["tenant_id"]},
            )
        ).one()
        admin_role = await conn.scalar(
            text(
                "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id "
                "WHERE m.tenant_id = CAST(:id AS uuid) AND u.email = 'ada@acme.test'"
            ),
            {"id": tenant["tenant_id"]},
        )
    assert tuple(row) == ("acme", "active", "pro")
    assert actions == ["tenant.created", "membership.created", "tenant.activated"]
    assert (settings.storage_root / tenant["storage_prefix"]).is_dir()
    assert tuple(quotas) == (PLANS[Plan.PRO].quotas.users, list(PLANS[Plan.PRO].features))
    assert admin_role == "tenant-admin"
    (welcome,) = mailbox.wait_for("ada@acme.test")
    assert "Acme" in welcome["Subject"]
    # Monitoring runs on as an abandoned child of the finished provisioning.
    monitoring = temporal_client.get_workflow_handle(tenant["monitoring_workflow_id"])
    description = await monitoring.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    await monitoring.signal("stop")


async def test_prefer_wait_answers_200_with_the_result(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    response = await api.post(
        "/v1/tenants", json=BODY, headers={**auth(token()), "Prefer": "wait=20"}
    )
    assert response.status == 200, await response.text()
    assert response.headers["Preference-Applied"] == "wait=20"
    operation = await response.json()
    assert operation["status"] == "succeeded"
    assert operation["result"]["slug"] == "acme"


async def test_duplicate_slug_is_a_conflict(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    admin = token()
    first = await api.post("/v1/tenants", json=BODY, headers={**auth(admin), "Prefer": "wait=20"})
    assert first.status == 200
    second = await api.post("/v1/tenants", json=BODY, headers=auth(admin))
    assert second.status == 409
    assert second.content_type == "application/problem+json"


async def read_events(response: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Parse a text/event-stream body into (id, event, data) triples."""
    events = []
    current: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in current:
                events.append(
                    (
                        current.get("id", ""),
                        current.get("event", "message"),
                        json.loads(current["data"]),
                    )
                )
            current = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        current[key] = value
    return events


async def test_sse_streams_steps_in_order_then_completes(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    admin = token()
    response = await api.post("/v1/tenants", json=BODY, headers=auth(admin))
    operation = await response.json()
    stream = await api.get(operation["links"]["events"], headers=auth(admin))
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    events = await asyncio.wait_for(read_events(stream), 30)

    ids = [int(event_id) for event_id, _, _ in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    steps = [(data["phase"], data["step"]) for _, kind, data in events if kind == "step"]
    sequential = ["validate_request", "create_tenant_record"]
    later = ["create_admin_user", "send_welcome_notification", "start_monitoring"]
    assert steps[:4] == [(phase, step) for step in sequential for phase in PHASES]
    # Database and storage run side by side: both start, then both finish, in any order.
    assert set(steps[4:8]) == {(p, s) for s in ("setup_database", "setup_storage") for p in PHASES}
    assert steps[4:6] == [("step_started", "setup_database"), ("step_started", "setup_storage")]
    assert steps[8:] == [(phase, step) for step in [*later, "activate_tenant"] for phase in PHASES]
    last_id, last_kind, last_data = events[-1]
    assert last_kind == "completed"
    assert last_data["status"] == "succeeded"

    # Resuming after the third event replays exactly what came after it.
    resumed = await api.get(
        operation["links"]["events"], headers={**auth(admin), "Last-Event-ID": events[2][0]}
    )
    assert await asyncio.wait_for(read_events(resumed), 30) == events[3:]
    # Resuming after the final event: 204, which tells an EventSource to stop reconnecting.
    done = await api.get(
        operation["links"]["events"], headers={**auth(admin), "Last-Event-ID": last_id}
    )
    assert done.status == 204


async def test_operations_of_another_tenant_are_not_found(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
    operation = await response.json()
    stranger = token(tenant_id=str(uuid.uuid4()))
    for path in (operation["links"]["self"], operation["links"]["events"]):
        foreign = await api.get(path, headers=auth(stranger))
        assert foreign.status == 404
    cancel = await api.post(
        operation["links"]["cancel"], headers=auth(token(tenant_id=str(uuid.uuid4())))
    )
    assert cancel.status == 404
