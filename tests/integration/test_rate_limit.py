"""Per-tenant rate limiting: a flood past the budget gets 429 with Retry-After and changes
nothing, other tenants keep theirs, the budget comes back, and with Redis every replica
shares one budget and an outage of Redis does not take the API down."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client as TemporalClient

from adx_api.app import create_app
from adx_api.rate_limit import KEY_PREFIX, RATE_LIMITER
from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.support.redis import RedisServer
from tests.support.tenancy import SeededTenant, seed_tenant

Api = TestClient[web.Request, web.Application]

# A long window keeps a flood inside one window: the counter's windows follow the clock.
WINDOW = 3600


@pytest.fixture
def api_with(settings: Settings, temporal_client: TemporalClient, sessions: Sessions) -> Any:
    @asynccontextmanager
    async def make(**update: Any) -> AsyncIterator[Api]:
        app = create_app(
            settings.model_copy(update=update), temporal=temporal_client, sessions=sessions
        )
        async with TestClient(TestServer(app)) as client:
            yield client

    return make


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, so that the test may stop it."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def acme(sessions: Sessions) -> SeededTenant:
    return await seed_tenant(sessions)


@pytest.fixture
async def globex(sessions: Sessions) -> SeededTenant:
    return await seed_tenant(sessions)


async def _groups(engine: AsyncEngine, tenant: SeededTenant) -> tuple[int, int]:
    """The tenant's groups and its audit entries."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM groups WHERE tenant_id = CAST(:t AS uuid)),"
                    " (SELECT count(*) FROM audit_log WHERE tenant_id = CAST(:t AS uuid))"
                ),
                {"t": tenant.tenant_id},
            )
        ).one()
    return row[0], row[1]


async def _create_group(api: Api, tenant: SeededTenant, settings: Settings, name: str) -> Any:
    return await api.post("/v1/groups", json={"name": name}, headers=tenant.auth(settings, "admin"))


async def _assert_rate_limited(response: Any, limit: int) -> int:
    assert response.status == 429, await response.text()
    assert response.content_type == "application/problem+json"
    assert (await response.json())["type"].endswith("/rate-limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= WINDOW
    assert response.headers["RateLimit-Policy"] == f'"tenant";q={limit};w={WINDOW}'
    assert re.fullmatch(r'"tenant";r=0;t=\d+', response.headers["RateLimit"])
    return int(retry_after)


async def test_a_flood_is_refused_per_tenant_and_creates_nothing(
    api_with: Any,
    settings: Settings,
    acme: SeededTenant,
    globex: SeededTenant,
    owner_engine: AsyncEngine,
) -> None:
    async with api_with(rate_limit_requests=3, rate_limit_window_seconds=WINDOW) as api:
        statuses = []
        for number in range(8):
            response = await _create_group(api, acme, settings, f"group {number}")
            statuses.append(response.status)
            if response.status == 201:
                assert response.headers["RateLimit-Policy"] == f'"tenant";q=3;w={WINDOW}'
            else:
                await _assert_rate_limited(response, 3)
        assert statuses == [201] * 3 + [429] * 5
        # The refused requests never reached the route: three groups, three audit entries.
        assert await _groups(owner_engine, acme) == (3, 3)
        # Any request of the tenant, by any of its users, spends the same budget.
        other_user = await api.get("/v1/groups", headers=acme.auth(settings, "alice"))
        await _assert_rate_limited(other_user, 3)
        # Another tenant has its own budget.
        assert (await _create_group(api, globex, settings, "theirs")).status == 201
        assert (await api.get("/v1/groups", headers=globex.auth(settings, "bob"))).status == 200
        # Probes and the API document are never counted.
        for _ in range(5):
            assert (await api.get("/healthz")).status == 200
            assert (await api.get("/openapi.json")).status == 200


async def test_the_budget_comes_back_after_retry_after(
    api_with: Any, settings: Settings, acme: SeededTenant
) -> None:
    headers = acme.auth(settings, "alice")
    async with api_with(rate_limit_requests=2, rate_limit_window_seconds=2) as api:
        for _ in range(10):
            response = await api.get("/v1/groups", headers=headers)
            if response.status == 429:
                break
            assert response.status == 200
        assert response.status == 429
        retry_after = int(response.headers["Retry-After"])
        assert 1 <= retry_after <= 2
        await asyncio.sleep(retry_after)
        assert (await api.get("/v1/groups", headers=headers)).status == 200


async def test_anonymous_shared_links_are_counted_per_address(
    api_with: Any, settings: Settings, acme: SeededTenant
) -> None:
    async with api_with(rate_limit_requests=3, rate_limit_window_seconds=WINDOW) as api:
        statuses = [(await api.get(f"/s/{'a' * 43}")).status for _ in range(5)]
        assert statuses == [404] * 3 + [429] * 2
        refused = await api.get(f"/s/{'b' * 43}")
        assert refused.headers["RateLimit-Policy"] == f'"address";q=3;w={WINDOW}'
        # A tenant's calls from the same address are the tenant's, not the address's.
        assert (await api.get("/v1/groups", headers=acme.auth(settings, "alice"))).status == 200


async def test_the_off_switch(api_with: Any, settings: Settings, acme: SeededTenant) -> None:
    async with api_with(rate_limit_requests=0) as api:
        assert RATE_LIMITER not in api.app
        for _ in range(5):
            response = await api.get("/v1/groups", headers=acme.auth(settings, "alice"))
            assert response.status == 200
            assert "RateLimit-Policy" not in response.headers


async def test_replicas_share_one_budget_in_redis(
    api_with: Any,
    settings: Settings,
    acme: SeededTenant,
    globex: SeededTenant,
    redis_server: RedisServer,
    owner_engine: AsyncEngine,
) -> None:
    shared = {
        "rate_limit_requests": 4,
        "rate_limit_window_seconds": WINDOW,
        "redis_url": SecretStr(redis_server.url),
    }
    async with api_with(**shared) as first, api_with(**shared) as second:
        assert first.app[RATE_LIMITER].store == "redis"
        statuses = [
            (await _create_group(api, acme, settings, f"group {number}")).status
            for number, api in enumerate([first, second, first, second, first, second])
        ]
        assert statuses == [201] * 4 + [429] * 2
        assert await _groups(owner_engine, acme) == (4, 4)
        assert (await _create_group(second, globex, settings, "theirs")).status == 201
    redis = Redis.from_url(redis_server.url)
    try:
        assert await redis.keys(f"{KEY_PREFIX}*")
    finally:
        await redis.aclose()


async def test_a_redis_outage_does_not_take_the_api_down(
    api_with: Any, settings: Settings, acme: SeededTenant, redis_server: RedisServer
) -> None:
    headers = acme.auth(settings, "alice")
    limited = {
        "rate_limit_requests": 3,
        "rate_limit_window_seconds": WINDOW,
        "redis_url": SecretStr(redis_server.url),
    }
    async with api_with(**limited) as api:
        assert (await api.get("/v1/groups", headers=headers)).status == 200
        redis_server.stop()
        statuses = []
        for _ in range(5):
            started = time.monotonic()
            statuses.append((await api.get("/v1/groups", headers=headers)).status)
            assert time.monotonic() - started < 1.0  # no waiting on the missing Redis
        # Served, and still limited: the count went on in this process (from zero).
        assert statuses == [200] * 3 + [429] * 2
        assert api.app[RATE_LIMITER].store == "in-process"
