"""GET /v1/operations: the caller's tenant's operations, from a visibility query on
TenantId, filtered by type, status and time, paged by an opaque cursor."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from temporalio.worker import Worker

from tests.conftest import TokenFactory
from tests.integration.operations.conftest import Client, start_tenant
from tests.integration.test_tenant_slice import auth, wait_for_status


async def _listed(api: Client, bearer: str, query: str = "") -> dict[str, Any]:
    response = await api.get(f"/v1/operations{query}", headers=auth(bearer))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _eventually(
    api: Client, bearer: str, query: str, count: int, within: float = 15
) -> dict[str, Any]:
    """Visibility is eventually consistent: wait until the list shows ``count`` items."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        body = await _listed(api, bearer, query)
        if len(body["items"]) == count:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.2)


async def test_lists_filters_and_pages_the_tenants_operations(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    admin = token()
    # Earlier tests' operations belong to the same (platform) tenant: look only at ours.
    began = quote(datetime.now(UTC).isoformat())
    started = [await start_tenant(api, admin, Prefer="wait=20") for _ in range(3)]
    assert all(op["status"] == "succeeded" for op in started)
    ids = {op["id"] for op in started}
    query = f"?type=tenant_provisioning_workflow&status=succeeded&since={began}"
    body = await _eventually(api, admin, query, 3)
    assert {item["id"] for item in body["items"]} == ids
    item = body["items"][0]
    assert item["status"] == "succeeded"
    assert item["progress"]["percent"] == 100
    assert item["links"]["self"] == f"/v1/operations/{item['id']}"
    assert body["next_cursor"] is None

    # Two pages of two and one, no item twice.
    first = await _listed(api, admin, f"{query}&limit=2")
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    second = await _listed(api, admin, f"{query}&limit=2&cursor={first['next_cursor']}")
    assert {i["id"] for i in first["items"] + second["items"]} == ids
    assert second["next_cursor"] is None

    # Finished operations are neither running nor failed.
    for status in ("pending", "running", "failed", "cancelled"):
        others = f"?type=tenant_provisioning_workflow&status={status}&since={began}"
        left = (await _listed(api, admin, others))["items"]
        assert left == []

    since = quote((datetime.now(UTC) + timedelta(minutes=5)).isoformat())
    assert (await _listed(api, admin, f"?since={since}"))["items"] == []
    until = quote((datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert (await _listed(api, admin, f"?until={until}"))["items"] == []

    # A tenant with no operations sees none of these.
    stranger = token(tenant_id=str(uuid.uuid4()))
    assert (await _listed(api, stranger))["items"] == []
    # Nor can it page through them with the admin's cursor: the cursor names its query.
    foreign = await api.get(
        f"/v1/operations{query}&limit=2&cursor={first['next_cursor']}", headers=auth(stranger)
    )
    assert foreign.status == 400
    for op in started:
        await wait_for_status(api, admin, op["links"]["self"])


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?status=done", "status"),
        ("?type=DROP%20TABLE", "type"),
        ("?type=a'%20OR%20'1'='1", "type"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=-1", "limit"),
        ("?since=yesterday", "since"),
        ("?since=2026-01-01T00:00:00", "since"),
        ("?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=" + "A" * 5000, "cursor"),
        ("?colour=blue", "colour"),
        ("?status=running&status=failed", "status"),
    ],
)
async def test_bad_filters_are_400_naming_the_parameter(
    api: Client, token: TokenFactory, query: str, names: str
) -> None:
    response = await api.get(f"/v1/operations{query}", headers=auth(token()))
    assert response.status == 400, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["type"].endswith("/bad-query")
    assert names in problem["detail"]
