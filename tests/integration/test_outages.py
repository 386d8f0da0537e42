"""When Temporal or PostgreSQL is unreachable the API says so (503), and nothing half-happens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from adx_api.app import API_RPC_RETRY, create_app
from adx_cli.devstack.net import free_port
from adx_cli.devstack.temporal import TemporalDevServer, TemporalError
from adx_core.db.engine import Sessions, create_engine, create_sessions
from adx_core.db.migrate import MigrationRoleError, upgrade
from adx_core.settings import Settings
from adx_core.temporal.client import connect
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import BODY, auth
from tests.integration.test_worker_death import tenant_count

ApiClient = TestClient[web.Request, web.Application]


@pytest.fixture
async def dead_database(settings: Settings) -> AsyncIterator[Sessions]:
    url = settings.database_url.get_secret_value().rsplit("@", 1)[0]
    engine: AsyncEngine = create_engine(settings, f"{url}@127.0.0.1:{free_port()}/adx")
    yield create_sessions(engine)
    await engine.dispose()


@pytest.fixture
async def dead_temporal(settings: Settings, tmp_path: Path) -> Client:
    """A client whose Temporal server went away after it connected."""
    for attempt in range(3):
        server = TemporalDevServer(port=free_port(), headless=True, log_path=tmp_path / "t.log")
        try:
            server.start()
            break
        except TemporalError:
            # The dev server also binds ports it picks itself; on a busy machine one of
            # them can race another process. A fresh set of ports fixes it.
            if attempt == 2:
                raise
    try:
        client = await connect(
            settings.model_copy(update={"temporal_address": server.address}),
            retry_config=API_RPC_RETRY,
        )
    finally:
        server.stop()
    return client


async def test_database_outage_is_503_with_retry_after(
    settings: Settings, temporal_client: Client, dead_database: Sessions, token: TokenFactory
) -> None:
    app = create_app(settings, temporal=temporal_client, sessions=dead_database)
    async with TestClient(TestServer(app)) as api:
        response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        problem = await response.json()
        assert problem["type"].endswith("/unavailable")
        assert "database" in problem["detail"]
        ready = await api.get("/readyz")
        assert ready.status == 503


async def test_temporal_outage_is_503_and_creates_nothing(
    settings: Settings,
    sessions: Sessions,
    dead_temporal: Client,
    token: TokenFactory,
    owner_engine: AsyncEngine,
) -> None:
    app = create_app(settings, temporal=dead_temporal, sessions=sessions)
    async with TestClient(TestServer(app)) as api:
        response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
        assert response.status == 503
        assert "Temporal" in (await response.json())["detail"]
        lookup = await api.get("/v1/operations/tenant-provisioning-x1", headers=auth(token()))
        assert lookup.status == 503
        assert lookup.headers["Retry-After"] == "5"
    assert await tenant_count(owner_engine, "acme") == 0


async def test_migrations_refuse_to_run_as_the_application_role(settings: Settings) -> None:
    as_app = settings.model_copy(update={"migration_database_url": settings.database_url})
    with pytest.raises(MigrationRoleError, match="schema owner"):
        await upgrade(as_app)
