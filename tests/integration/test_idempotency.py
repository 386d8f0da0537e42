"""Idempotency-Key on every POST, through the real API on PostgreSQL and Temporal: a repeat
returns the first answer (a direct 201, or the original operation), never a second run."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from adx_api import idempotency
from adx_api.idempotency import EXEMPT_ROUTES, REPLAYED_HEADER, exempt_routes, purge_expired
from adx_api.problems import TYPE_BASE
from adx_core.auth import Role
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import File, IdempotencyRecord
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.support.tenancy import SeededTenant, seed_tenant

Api = TestClient[web.Request, web.Application]
GROUPS = "/v1/groups"


@asynccontextmanager
async def api_for(
    settings: Settings, temporal_client: Client, sessions: Sessions
) -> AsyncIterator[Api]:
    from adx_api.app import create_app

    app = create_app(settings, temporal=temporal_client, sessions=sessions)
    async with TestClient(TestServer(app)) as client:
        yield client


def keyed(headers: dict[str, str], key: str, **more: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key, **more}


async def problem_type(response: ClientResponse) -> str:
    assert response.content_type == "application/problem+json", await response.text()
    kind: str = (await response.json())["type"]
    return kind.removeprefix(TYPE_BASE)


async def count(owner_engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with owner_engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def groups_of(owner_engine: AsyncEngine, tenant: SeededTenant) -> int:
    return await count(
        owner_engine, "SELECT count(*) FROM groups WHERE tenant_id = :t", t=tenant.tenant_id
    )


async def records(owner_engine: AsyncEngine) -> int:
    return await count(owner_engine, "SELECT count(*) FROM idempotency_records")


@pytest.fixture
async def tenant(sessions: Sessions) -> SeededTenant:
    return await seed_tenant(
        sessions,
        members={"admin": Role.TENANT_ADMIN, "admin2": Role.TENANT_ADMIN, "vera": Role.VIEWER},
    )


# A direct operation: the first 201, once.


async def test_a_repeated_create_returns_the_first_201_and_creates_one_group(
    api: Api, settings: Settings, tenant: SeededTenant, owner_engine: AsyncEngine
) -> None:
    headers = keyed(tenant.auth(settings, "admin"), "group-ops-1")
    first = await api.post(GROUPS, json={"name": "ops"}, headers=headers)
    assert first.status == 201, await first.text()
    assert REPLAYED_HEADER not in first.headers
    again = await api.post(GROUPS, json={"name": "ops"}, headers=headers)
    assert again.status == 201
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.content_type == "application/json"
    assert await again.json() == await first.json()
    assert await groups_of(owner_engine, tenant) == 1

    # Same key, another body: refused, and nothing is created.
    other = await api.post(GROUPS, json={"name": "dev"}, headers=headers)
    assert other.status == 422
    assert await problem_type(other) == "idempotency-key-reused"
    assert await groups_of(owner_engine, tenant) == 1


async def test_concurrent_duplicates_run_once(
    api: Api, settings: Settings, tenant: SeededTenant, owner_engine: AsyncEngine
) -> None:
    headers = keyed(tenant.auth(settings, "admin"), "group-race")
    answers = await asyncio.gather(
        *(api.post(GROUPS, json={"name": "racers"}, headers=headers) for _ in range(5))
    )
    statuses = sorted(answer.status for answer in answers)
    assert set(statuses) <= {201, 409}, statuses
    created = [a for a in answers if a.status == 201 and REPLAYED_HEADER not in a.headers]
    assert len(created) == 1
    ids = {(await a.json())["id"] for a in answers if a.status == 201}
    assert len(ids) == 1
    for answer in answers:
        if answer.status == 409:
            assert await problem_type(answer) == "idempotency-key-in-flight"
    assert await groups_of(owner_engine, tenant) == 1


async def test_a_repeat_while_the_first_is_in_flight_is_409_until_the_first_is_abandoned(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    sessions: Sessions,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record in flight, as another replica would hold it: a repeat waits briefly, then
    gets 409 with Retry-After; once the holder is long gone, the key can be taken over."""
    monkeypatch.setattr(idempotency, "IN_FLIGHT_WAIT", 0.3)
    body = json.dumps({"name": "slow"}).encode()
    admin = tenant.members["admin"].user_id
    async with tenant_session(sessions, tenant.tenant_id) as session:
        session.add(
            IdempotencyRecord(
                tenant_id=uuid.UUID(tenant.tenant_id),
                user_id=admin,
                key="held",
                attempt=uuid.uuid4(),
                method="POST",
                route=GROUPS,
                fingerprint=idempotency.fingerprint("POST", GROUPS, body),
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
    headers = keyed(tenant.auth(settings, "admin"), "held", **{"Content-Type": "application/json"})
    busy = await api.post(GROUPS, data=body, headers=headers)
    assert busy.status == 409
    assert await problem_type(busy) == "idempotency-key-in-flight"
    assert busy.headers["Retry-After"] == "1"
    assert await groups_of(owner_engine, tenant) == 0

    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE idempotency_records SET created_at = now() - interval '10 minutes'")
        )
    taken = await api.post(GROUPS, data=body, headers=headers)
    assert taken.status == 201, await taken.text()
    assert await groups_of(owner_engine, tenant) == 1


async def test_keys_belong_to_their_user_and_tenant(
    api: Api, settings: Settings, tenant: SeededTenant, sessions: Sessions
) -> None:
    other_tenant = await seed_tenant(sessions, members={"admin": Role.TENANT_ADMIN})
    key = "shared-spelling"
    ids = set()
    for who, name in (
        (tenant.auth(settings, "admin"), "alpha"),
        (tenant.auth(settings, "admin2"), "beta"),  # another body: fine, another user's key
        (other_tenant.auth(settings, "admin"), "alpha"),
    ):
        answer = await api.post(GROUPS, json={"name": name}, headers=keyed(who, key))
        assert answer.status == 201, await answer.text()
        assert REPLAYED_HEADER not in answer.headers
        ids.add((await answer.json())["id"])
    assert len(ids) == 3


async def test_a_failed_first_request_leaves_the_key_reusable(
    api: Api, settings: Settings, tenant: SeededTenant, owner_engine: AsyncEngine
) -> None:
    headers = keyed(tenant.auth(settings, "admin"), "fix-and-retry")
    invalid = await api.post(GROUPS, json={"name": ""}, headers=headers)
    assert invalid.status == 422
    assert await problem_type(invalid) == "validation"
    viewer = await api.post(
        GROUPS, json={"name": "ok"}, headers=keyed(tenant.auth(settings, "vera"), "fix-and-retry")
    )
    assert viewer.status == 403
    assert await records(owner_engine) == 0
    fixed = await api.post(GROUPS, json={"name": "ok"}, headers=headers)
    assert fixed.status == 201, await fixed.text()
    assert REPLAYED_HEADER not in fixed.headers
    assert await groups_of(owner_engine, tenant) == 1


MALFORMED: list[CIMultiDict[str]] = [
    CIMultiDict([("Idempotency-Key", "k" * 201)]),
    CIMultiDict([("Idempotency-Key", "")]),
    CIMultiDict([("Idempotency-Key", "with space")]),
    CIMultiDict([("Idempotency-Key", "tab\there")]),
    CIMultiDict([("Idempotency-Key", "caf\u00e9".encode().decode("latin-1"))]),
    CIMultiDict([("Idempotency-Key", "one"), ("Idempotency-Key", "two")]),
]


@pytest.mark.parametrize(
    "bad", MALFORMED, ids=["too-long", "empty", "space", "tab", "non-ascii", "twice"]
)
async def test_malformed_keys_are_400_and_change_nothing(
    bad: CIMultiDict[str],
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    owner_engine: AsyncEngine,
) -> None:
    headers = CIMultiDict(tenant.auth(settings, "admin"))
    headers.extend(bad)
    response = await api.post(GROUPS, json={"name": "never"}, headers=headers)
    assert response.status == 400
    assert await problem_type(response) == "bad-idempotency-key"
    assert await groups_of(owner_engine, tenant) == 0
    assert await records(owner_engine) == 0


async def test_an_expired_key_is_a_new_key_and_the_purge_removes_it(
    settings: Settings,
    temporal_client: Client,
    sessions: Sessions,
    tenant: SeededTenant,
    owner_engine: AsyncEngine,
) -> None:
    # model_copy skips validation: a TTL far below the 60 s minimum, for the test.
    short = settings.model_copy(update={"idempotency_ttl_seconds": 1})
    headers = keyed(tenant.auth(settings, "admin"), "short-lived")
    async with api_for(short, temporal_client, sessions) as api:
        first = await api.post(GROUPS, json={"name": "one"}, headers=headers)
        assert first.status == 201
        await asyncio.sleep(1.5)
        later = await api.post(GROUPS, json={"name": "two"}, headers=headers)
        assert later.status == 201, await later.text()
        assert REPLAYED_HEADER not in later.headers
    assert await groups_of(owner_engine, tenant) == 2
    assert await records(owner_engine) == 1
    await asyncio.sleep(1.5)
    assert await purge_expired(sessions) == 1
    assert await records(owner_engine) == 0


async def test_the_app_role_cannot_use_the_purge_policy(
    sessions: Sessions, owner_engine: AsyncEngine, tenant: SeededTenant
) -> None:
    """The purge's policy is the owner's, inside the function only: setting its flag as the
    app role shows no rows of any tenant."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO idempotency_records (tenant_id, user_id, key, attempt, method,"
                " route, fingerprint, expires_at) VALUES (CAST(:t AS uuid), 'u', 'k',"
                " gen_random_uuid(), 'POST', '/v1/groups', 'f', now() - interval '1 second')"
            ),
            {"t": tenant.tenant_id},
        )
    async with sessions() as session, session.begin():
        await session.execute(text("SET LOCAL adx.idempotency_purge = 'on'"))
        seen = (await session.execute(text("SELECT count(*) FROM idempotency_records"))).scalar()
        deleted = await session.execute(text("DELETE FROM idempotency_records"))
    assert seen == 0
    assert deleted.rowcount == 0  # type: ignore[attr-defined]
    assert await purge_expired(sessions) == 1


# Workflow operations: a repeat returns the original operation, as it is now.


async def test_a_repeated_tenant_creation_returns_the_original_operation(
    api: Api, token: TokenFactory, tenants_worker: Worker, owner_engine: AsyncEngine
) -> None:
    admin = {"Authorization": f"Bearer {token()}"}  # one token: one user
    body = {
        "slug": "idem-co",
        "display_name": "Idem Co",
        "admin": {"email": "ann@idem.test", "name": "Ann"},
    }
    headers = keyed(admin, "provision-idem-co")
    first = await api.post("/v1/tenants", json=body, headers=headers)
    assert first.status == 202, await first.text()
    operation = await first.json()
    again = await api.post("/v1/tenants", json=body, headers=headers)
    assert again.status in (200, 202)
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert (await again.json())["id"] == operation["id"]

    waited = await api.post("/v1/tenants", json=body, headers={**headers, "Prefer": "wait=10"})
    assert waited.status == 200, await waited.text()
    assert waited.headers["Preference-Applied"] == "wait=10"
    final = await waited.json()
    assert (final["id"], final["status"]) == (operation["id"], "succeeded")
    # The slug is taken now: only the key makes the repeat an answer rather than a 409.
    assert (await api.post("/v1/tenants", json=body, headers=admin)).status == 409
    assert await count(owner_engine, "SELECT count(*) FROM tenants WHERE slug = 'idem-co'") == 1


async def test_a_first_request_with_prefer_wait_replays_as_200(
    api: Api, token: TokenFactory, tenants_worker: Worker
) -> None:
    admin = {"Authorization": f"Bearer {token()}"}
    body = {
        "slug": "idem-wait",
        "display_name": "Idem Wait",
        "admin": {"email": "bo@idem.test", "name": "Bo"},
    }
    headers = keyed(admin, "provision-idem-wait", Prefer="wait=10")
    first = await api.post("/v1/tenants", json=body, headers=headers)
    assert first.status == 200, await first.text()
    again = await api.post("/v1/tenants", json=body, headers=headers)
    assert again.status == 200
    assert again.headers[REPLAYED_HEADER] == "true"
    assert (await again.json())["id"] == (await first.json())["id"]
    assert (await again.json())["status"] == "succeeded"


async def test_a_repeated_storage_migration_returns_the_running_operation(
    settings: Settings,
    temporal_client: Client,
    sessions: Sessions,
    tenant: SeededTenant,
) -> None:
    """No files worker: the migration stays pending, and a second one would be a 409."""
    with_gcs = settings.model_copy(update={"gcs_bucket": "never-reached"})
    headers = keyed(tenant.auth(settings, "admin"), "move-to-gcs")
    async with api_for(with_gcs, temporal_client, sessions) as api:
        first = await api.post("/v1/storage/migrations", json={"target": "gcs"}, headers=headers)
        assert first.status == 202, await first.text()
        operation_id = (await first.json())["id"]
        try:
            again = await api.post(
                "/v1/storage/migrations", json={"target": "gcs"}, headers=headers
            )
            assert again.status == 202, await again.text()
            assert again.headers[REPLAYED_HEADER] == "true"
            assert (await again.json())["id"] == operation_id
            unkeyed = await api.post(
                "/v1/storage/migrations",
                json={"target": "gcs"},
                headers=tenant.auth(settings, "admin"),
            )
            assert unkeyed.status == 409
        finally:
            await temporal_client.get_workflow_handle(operation_id).terminate("test over")


async def test_a_repeated_reprocessing_returns_the_running_operation(
    api: Api,
    settings: Settings,
    temporal_client: Client,
    sessions: Sessions,
    tenant: SeededTenant,
) -> None:
    """No files worker: the run stays pending, and another run of the file would be a 409."""
    file_id = uuid.uuid4()
    async with tenant_session(sessions, tenant.tenant_id) as session:
        session.add(
            File(
                id=file_id,
                tenant_id=uuid.UUID(tenant.tenant_id),
                name="p.png",
                content_type="image/png",
                size_bytes=1,
                storage_key=f"tenants/{tenant.tenant_id}/files/{file_id}",
                status="ready",
                created_by=uuid.UUID(tenant.members["admin"].user_id),
                processing={"thumbnails": "failed"},
            )
        )
    path = f"/v1/files/{file_id}/processing"
    admin = tenant.auth(settings, "admin")
    headers = keyed(admin, "rerun-thumbnails")
    first = await api.post(path, headers=headers)
    assert first.status == 202, await first.text()
    operation_id = (await first.json())["id"]
    try:
        again = await api.post(path, headers=headers)
        assert again.status == 202, await again.text()
        assert again.headers[REPLAYED_HEADER] == "true"
        assert (await again.json())["id"] == operation_id
        # The same key with a body is another request.
        steps = await api.post(path, json={"steps": ["thumbnails"]}, headers=headers)
        assert steps.status == 422
        assert await problem_type(steps) == "idempotency-key-reused"
        assert (await api.post(path, headers=admin)).status == 409
    finally:
        await temporal_client.get_workflow_handle(operation_id).terminate("test over")


# Coverage: every POST and PATCH, including routes added later, unless listed as exempt.


async def test_every_post_and_patch_route_checks_the_key_unless_exempt(
    api: Api, token: TokenFactory
) -> None:
    app = api.app
    assert app is not None
    assert len(exempt_routes(app)) == len(EXEMPT_ROUTES), "an exempt route no longer exists"
    exempt = {(method, path) for method, path, _ in exempt_routes(app)}
    checked = []
    for route in app.router.routes():
        if route.method not in idempotency.METHODS or route.resource is None:
            continue
        canonical = route.resource.canonical
        if (route.method, canonical) in exempt:
            continue
        path = canonical
        for name in ("{id}", "{user_id}", "{share_id}"):
            path = path.replace(name, str(uuid.uuid4()))
        response = await api.request(
            route.method,
            path,
            json={},
            headers={"Authorization": f"Bearer {token()}", "Idempotency-Key": "bad key"},
        )
        assert response.status == 400, (route.method, canonical, await response.text())
        assert await problem_type(response) == "bad-idempotency-key"
        checked.append(canonical)
    assert "/v1/groups" in checked
    assert "/v1/tenants" in checked
