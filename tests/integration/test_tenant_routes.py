"""Tenant reads and removal over HTTP: who may see what, and deprovisioning end to end."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from adx_core.auth import Role
from adx_core.contracts.plans import PLANS, Plan
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import BODY, auth
from tests.support.mail import Mailbox

Client = TestClient[web.Request, web.Application]


async def provision(api: Client, token: TokenFactory, **changes: Any) -> dict[str, Any]:
    body = {**BODY, **changes}
    response = await api.post(
        "/v1/tenants", json=body, headers={**auth(token()), "Prefer": "wait=30"}
    )
    assert response.status == 200, await response.text()
    operation = await response.json()
    assert operation["status"] == "succeeded", operation
    result: dict[str, Any] = operation["result"]
    return result


async def snapshot(owner_engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Everything a refused request must leave as it was."""
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT t.id, t.status, t.plan, "
                "(SELECT count(*) FROM memberships m WHERE m.tenant_id = t.id), "
                "(SELECT count(*) FROM tenant_quotas q WHERE q.tenant_id = t.id) "
                "FROM tenants t ORDER BY t.id"
            )
        )
        return [tuple(row) for row in rows]


async def test_platform_admin_lists_every_tenant_in_pages(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    for slug in ("acme", "bravo", "charlie"):
        await provision(api, token, slug=slug, admin={"email": f"a@{slug}.test", "name": "A"})
    admin = token()
    first = await (await api.get("/v1/tenants?limit=2", headers=auth(admin))).json()
    assert [t["slug"] for t in first["items"]] == ["acme", "bravo"]
    second = await (await api.get(first["next"], headers=auth(admin))).json()
    assert [t["slug"] for t in second["items"]] == ["charlie", "platform"]
    assert "next" not in second
    failed = await (await api.get("/v1/tenants?status=failed", headers=auth(admin))).json()
    assert failed["items"] == []


async def test_a_member_lists_and_reads_only_their_own_tenants(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    acme = await provision(api, token)
    bravo = await provision(api, token, slug="bravo", admin={"email": "b@b.test", "name": "B"})
    ada = token(Role.TENANT_ADMIN, tenant_id=acme["tenant_id"], user_id=acme["admin_user_id"])

    listed = await (await api.get("/v1/tenants", headers=auth(ada))).json()
    assert [(t["slug"], t["role"]) for t in listed["items"]] == [("acme", "tenant-admin")]

    mine = await api.get(f"/v1/tenants/{acme['tenant_id']}", headers=auth(ada))
    assert mine.status == 200
    tenant = await mine.json()
    assert tenant["plan"] == "pro"
    assert tenant["quotas"]["users"] == PLANS[Plan.PRO].quotas.users
    assert "sharing" in tenant["features"]
    for path in (f"/v1/tenants/{bravo['tenant_id']}", f"/v1/tenants/{bravo['tenant_id']}/usage"):
        foreign = await api.get(path, headers=auth(ada))
        assert foreign.status == 404
        assert foreign.content_type == "application/problem+json"


async def test_usage_shows_the_latest_sample_against_the_quotas(
    api: Client, token: TokenFactory, tenants_worker: Worker, owner_engine: AsyncEngine
) -> None:
    acme = await provision(api, token)
    viewer = token(Role.VIEWER, tenant_id=acme["tenant_id"])
    path = f"/v1/tenants/{acme['tenant_id']}/usage"
    before = await (await api.get(path, headers=auth(viewer))).json()
    assert before["sampled_at"] is None or before["resources"]["users"]["used"] is not None
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenant_usage (tenant_id, storage_bytes, files, users, db_rows,"
                " sampled_at) VALUES (CAST(:t AS uuid), 0, 25000, 5, 100, now())"
                " ON CONFLICT (tenant_id) DO UPDATE SET files = 25000, users = 5"
            ),
            {"t": acme["tenant_id"]},
        )
    after = await (await api.get(path, headers=auth(viewer))).json()
    assert after["resources"]["files"] == {"used": 25000, "quota": 100_000, "percent": 25.0}
    assert after["resources"]["users"]["percent"] == 10.0


async def test_quota_overrides_are_applied_and_bounded(
    api: Client, token: TokenFactory, tenants_worker: Worker, owner_engine: AsyncEngine
) -> None:
    acme = await provision(api, token, quotas={"users": 75})
    async with owner_engine.connect() as conn:
        users = await conn.scalar(
            text("SELECT users FROM tenant_quotas WHERE tenant_id = CAST(:t AS uuid)"),
            {"t": acme["tenant_id"]},
        )
    assert users == 75
    for quotas in ({"users": 10**9}, {"users": 0}, {"users": True}, {"users": "5"}, {"seats": 5}):
        response = await api.post(
            "/v1/tenants",
            json={**BODY, "slug": "other", "quotas": quotas},
            headers=auth(token()),
        )
        assert response.status == 422, quotas
        assert (await response.json())["type"].endswith("/validation")


async def test_deprovisioning_removes_everything_and_is_safe_twice(
    api: Client,
    token: TokenFactory,
    tenants_worker: Worker,
    owner_engine: AsyncEngine,
    settings: Settings,
    mailbox: Mailbox,
) -> None:
    acme = await provision(api, token)
    tenant_id = acme["tenant_id"]
    files = settings.storage_root / acme["storage_prefix"]
    (files / "report.txt").write_text("quarterly numbers")
    admin = token()

    response = await api.delete(
        f"/v1/tenants/{tenant_id}?export=true", headers={**auth(admin), "Prefer": "wait=30"}
    )
    assert response.status == 200, await response.text()
    operation = await response.json()
    assert operation["type"] == "tenant_deprovisioning_workflow"
    assert operation["status"] == "succeeded", operation
    result = operation["result"]
    assert result["already_deprovisioned"] is False
    assert result["objects_removed"] == 1
    assert result["export_key"] == f"exports/{tenant_id}/"

    assert not files.exists()
    export = settings.storage_root / "exports" / tenant_id
    assert (export / "objects" / "report.txt").read_text() == "quarterly numbers"
    manifest = json.loads((export / "rows.json").read_text())
    assert manifest["tables"]["tenants"][0]["slug"] == "acme"
    async with owner_engine.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM tenants WHERE id = CAST(:t AS uuid)"), {"t": tenant_id}
        )
        left = {
            table: await conn.scalar(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = CAST(:t AS uuid)"),
                {"t": tenant_id},
            )
            for table in ("memberships", "tenant_quotas", "tenant_role_permissions")
        }
        platform_audit = await conn.scalar(
            text(
                "SELECT count(*) FROM audit_log WHERE tenant_id = CAST(:p AS uuid) "
                "AND action = 'tenant.deprovisioned' AND subject = :t"
            ),
            {"p": PLATFORM_TENANT_ID, "t": tenant_id},
        )
    assert status == "deprovisioned"
    assert left == dict.fromkeys(left, 0)
    assert platform_audit == 1
    mailbox.wait_for("ada@acme.test", count=2)  # the welcome, then the goodbye

    again = await api.delete(
        f"/v1/tenants/{tenant_id}", headers={**auth(admin), "Prefer": "wait=30"}
    )
    assert again.status == 200
    assert (await again.json())["result"]["already_deprovisioned"] is True
    # The slug is free for a new tenant.
    await provision(api, token)


async def test_only_platform_admins_remove_tenants(
    api: Client, token: TokenFactory, tenants_worker: Worker, owner_engine: AsyncEngine
) -> None:
    acme = await provision(api, token)
    bravo = await provision(api, token, slug="bravo", admin={"email": "b@b.test", "name": "B"})
    before = await snapshot(owner_engine)
    acme_admin = token(Role.TENANT_ADMIN, tenant_id=acme["tenant_id"])
    cases = [
        (acme_admin, f"/v1/tenants/{acme['tenant_id']}", 403),
        (acme_admin, f"/v1/tenants/{bravo['tenant_id']}", 404),
        (token(Role.MEMBER, tenant_id=acme["tenant_id"]), f"/v1/tenants/{bravo['tenant_id']}", 404),
        (token(), f"/v1/tenants/{PLATFORM_TENANT_ID}", 409),
        (token(), f"/v1/tenants/{uuid.uuid4()}", 404),
        (token(), "/v1/tenants/not-a-uuid", 404),
        (token(), f"/v1/tenants/{{{acme['tenant_id']}}}", 404),
        (token(), f"/v1/tenants/{acme['tenant_id']}?export=yes", 400),
        (token(), "/v1/tenants/" + "a" * 5000, 404),
    ]
    for caller, path, status in cases:
        response = await api.delete(path, headers=auth(caller))
        assert response.status == status, (path, await response.text())
        assert response.content_type == "application/problem+json"
    assert await snapshot(owner_engine) == before


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=abc",
        "status=deleted",
        "after=%00",
        "after=" + "x" * 41,
    ],
)
async def test_bad_list_queries_are_refused(api: Client, token: TokenFactory, query: str) -> None:
    response = await api.get(f"/v1/tenants?{query}", headers=auth(token()))
    assert response.status == 400
    assert (await response.json())["type"].endswith("/bad-query")


async def test_reads_need_a_token(api: Client) -> None:
    for path in ("/v1/tenants", f"/v1/tenants/{PLATFORM_TENANT_ID}"):
        assert (await api.get(path)).status == 401
