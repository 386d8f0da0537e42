"""tenant_switch_workflow through POST /v1/me/active-tenant: the happy path with either
cache, the token it issues, injected failures at every step, and isolation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis.asyncio as redis_client
from aiohttp import web
from aiohttp.test_utils import TestClient

from adx_core.cache import RedisCache, context_key
from adx_workers.resources import WorkerResources
from adx_workers.users.activities import UserActivities
from tests.integration.users.conftest import (
    NoCache,
    UsersWorkerFactory,
    World,
    bearer,
    failing,
)
from tests.support.redis import RedisServer

Api = TestClient[web.Request, web.Application]


async def two_tenants(world: World) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """acme and globex; ada is in both (admin of acme, member of globex), active in acme."""
    acme = await world.tenant("acme")
    globex = await world.tenant("globex")
    ada = await world.user(
        "ada@example.test", [(acme, "tenant-admin"), (globex, "member")], active=acme
    )
    return acme, globex, ada


async def switch(api: Api, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await api.post("/v1/me/active-tenant", json=body, headers=bearer(token))
    return response.status, await response.json(content_type=None)


async def active_tenant(world: World, user: uuid.UUID) -> Any:
    return await world.scalar("SELECT active_tenant_id FROM users WHERE id = :u", u=user)


@pytest.mark.parametrize("cache_kind", ["in-process", "redis"])
async def test_switch_issues_a_token_for_the_new_tenant_and_caches_its_context(
    cache_kind: str,
    api: Api,
    world: World,
    users_worker_with: UsersWorkerFactory,
    request: pytest.FixtureRequest,
    settings: Any,
) -> None:
    acme, globex, ada = await two_tenants(world)
    cache: RedisCache | None = None
    if cache_kind == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        cache = RedisCache(redis_server.url, settings.tenant_context_ttl_seconds)
        await cache.invalidate(str(globex))
    async with users_worker_with(cache=cache) as worker:
        status, body = await switch(
            api, world.token(ada, acme, "tenant-admin"), {"tenant_id": str(globex)}
        )
        assert status == 200, body
        assert body["tenant_id"] == str(globex)
        assert body["previous_tenant_id"] == str(acme)
        assert body["role"] == "member"
        assert "tenant.access" in body["permissions"]
        assert "users.manage" not in body["permissions"]
        assert body["quotas"]["users"] == 5
        assert body["settings"] == {"locale": "en"}
        assert await active_tenant(world, ada) == globex
        assert worker.activities.context_loads == 1

        # Back to acme by slug, then to globex again: globex's context now comes from the
        # cache, so the database is read for acme only.
        status, back = await switch(api, body["token"], {"tenant": "acme"})
        assert status == 200, back
        assert back["role"] == "tenant-admin"
        status, again = await switch(api, back["token"], {"tenant_id": str(globex)})
        assert status == 200, again
        assert worker.activities.context_loads == 2
        assert worker.cache.name == cache_kind

    if cache is not None:
        await cache.close()
        direct = redis_client.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            cached = json.loads(await direct.get(context_key(str(globex))))
            assert 0 < await direct.ttl(context_key(str(globex))) <= 60
        finally:
            await direct.aclose()
        assert cached["slug"] == "globex"
        assert cached["permissions"]["member"] == again["permissions"]

    # The token works against the API and speaks for the new tenant.
    me = await api.get("/v1/me", headers=bearer(again["token"]))
    assert me.status == 200
    me_body = await me.json()
    assert me_body["tenant_id"] == str(globex)
    assert me_body["active_tenant_id"] == str(globex)
    assert me_body["roles"] == ["member"]
    assert me_body["session_id"] == again["session_id"]
    assert {m["slug"]: m["role"] for m in me_body["memberships"]} == {
        "acme": "tenant-admin",
        "globex": "member",
    }
    sessions = await world.rows(
        "SELECT tenant_id FROM auth_sessions WHERE user_id = :u AND revoked_at IS NULL", u=ada
    )
    assert sorted(str(row.tenant_id) for row in sessions) == sorted(
        [str(globex), str(acme), str(globex)]
    )


async def test_a_cache_outage_does_not_break_a_switch(
    api: Api, world: World, users_worker_with: UsersWorkerFactory, settings: Any
) -> None:
    acme, globex, ada = await two_tenants(world)
    from adx_cli.devstack.net import free_port

    nobody = RedisCache(f"redis://127.0.0.1:{free_port()}/0", settings.tenant_context_ttl_seconds)
    try:
        async with users_worker_with(cache=nobody) as worker:
            status, body = await switch(
                api, world.token(ada, acme, "tenant-admin"), {"tenant_id": str(globex)}
            )
            assert status == 200, body
            assert worker.activities.context_loads == 1
    finally:
        await nobody.close()
    assert await active_tenant(world, ada) == globex


# Each step, the real activity behind it, and whether its fake does the real work before
# failing (a step that crashed after its commit leaves work for its undo).
SWITCH_STEPS = {
    "validate": ("validate_switch", False),
    "load_tenant_context": ("load_tenant_context", False),
    "set_active_tenant": ("set_active_tenant", True),
    "issue_token": ("issue_session_token", True),
}


@pytest.mark.parametrize("step", SWITCH_STEPS)
async def test_a_failed_step_leaves_the_user_in_their_old_tenant(
    step: str,
    api: Api,
    world: World,
    users_worker_with: UsersWorkerFactory,
    resources: WorkerResources,
    settings: Any,
) -> None:
    acme, globex, ada = await two_tenants(world)
    before = await world.state()
    method, after_work = SWITCH_STEPS[step]
    real = UserActivities(resources.sessions, settings, NoCache())
    fake = failing(getattr(real, method), after_work=after_work)
    async with users_worker_with(fake):
        status, body = await switch(
            api, world.token(ada, acme, "tenant-admin"), {"tenant_id": str(globex)}
        )
    assert status == 500, body
    assert body["type"].endswith("/switch-failed")
    assert "token" not in body
    assert await world.state() == before
    assert await active_tenant(world, ada) == acme
    live = await world.scalar(
        "SELECT count(*) FROM auth_sessions WHERE user_id = :u AND revoked_at IS NULL", u=ada
    )
    assert live == 0


async def test_a_user_cannot_switch_into_a_tenant_they_are_not_in(
    api: Api, world: World, users_worker: Any
) -> None:
    acme, globex, _ = await two_tenants(world)
    bob = await world.user("bob@example.test", [(acme, "member")], active=acme)
    before = await world.state()
    token = world.token(bob, acme)
    for body in (
        {"tenant_id": str(globex)},
        {"tenant": "globex"},
        {"tenant_id": str(uuid.uuid4())},
    ):
        status, problem = await switch(api, token, body)
        assert status == 404, problem
        assert problem["type"].endswith("/not-found")
    assert await world.state() == before


async def test_a_suspended_tenant_cannot_be_entered(
    api: Api, world: World, users_worker: Any
) -> None:
    acme = await world.tenant("acme")
    frozen = await world.tenant("frozen", status="suspended")
    ada = await world.user("ada@example.test", [(acme, "member"), (frozen, "member")], active=acme)
    before = await world.state()
    status, problem = await switch(api, world.token(ada, acme), {"tenant_id": str(frozen)})
    assert status == 409, problem
    assert await world.state() == before


async def test_a_role_without_tenant_access_is_refused(
    api: Api, world: World, users_worker: Any
) -> None:
    acme, globex, ada = await two_tenants(world)
    await world.execute(
        "DELETE FROM tenant_role_permissions WHERE tenant_id = :t AND role = 'member'"
        " AND permission = 'tenant.access'",
        t=globex,
    )
    before = await world.state()
    status, problem = await switch(
        api, world.token(ada, acme, "tenant-admin"), {"tenant_id": str(globex)}
    )
    assert status == 403, problem
    assert await world.state() == before
