"""Session fixtures: a real PostgreSQL and a real Temporal dev server, shared by all tests.

Each test gets a fresh task queue prefix (so its workflows reach only its own worker), a
fresh storage root and clean tables.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adx_cli.devstack.postgres import EmbeddedPostgres
from adx_core import telemetry
from adx_core.auth import Role, mint_token
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.db.engine import Sessions, create_engine, create_sessions
from adx_core.db.migrate import upgrade
from adx_core.logging import configure_logging
from adx_core.settings import Settings
from adx_core.temporal.client import connect
from adx_workers.resources import WorkerResources
from adx_workers.tenants.worker import build_worker as build_tenants_worker
from tests.support.clamd import ClamdFactory, ClamdServer
from tests.support.mail import Mailbox, SmtpServer
from tests.support.otlp import TraceReceiver
from tests.support.servers import start_postgres, start_temporal
from tests.support.storage import StorageServer
from tests.support.workers import WorkerFactory, tenants_worker_with

APP_PASSWORD = "app-password-for-tests"
CODEC_KEY = base64.b64encode(b"k" * 32).decode()
JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adx")


@pytest.fixture(scope="session")
def postgres(session_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = start_postgres(session_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_temporal()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailbox(smtp_server: SmtpServer) -> Mailbox:
    """This test's view of the SMTP server: empty at the start, refusing nobody."""
    smtp_server.mailbox.clear()
    return smtp_server.mailbox


@pytest.fixture(scope="session")
def base_settings(
    postgres: EmbeddedPostgres,
    temporal_env: WorkflowEnvironment,
    session_dir: Path,
    smtp_server: SmtpServer,
) -> Settings:
    postgres.create_database("adx")
    return Settings(
        env="test",
        database_url=postgres.dsn(
            "adx", user="adx_app", password=APP_PASSWORD, driver="postgresql+asyncpg"
        ),
        migration_database_url=postgres.dsn("adx", driver="postgresql+asyncpg"),
        temporal_address=temporal_env.client.service_client.config.target_host,
        codec_keys=f"k1:{CODEC_KEY}",
        jwt_secret=JWT_SECRET,
        storage_root=session_dir / "storage",
        database_pool_size=5,
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
    )


@pytest.fixture(scope="session")
async def migrated(base_settings: Settings) -> Settings:
    await upgrade(base_settings)
    return base_settings


@pytest.fixture(scope="session")
async def owner_engine(migrated: Settings) -> AsyncIterator[AsyncEngine]:
    """A connection as the schema owner (a superuser here): for setup and inspection only."""
    assert migrated.migration_database_url is not None
    engine = create_async_engine(migrated.migration_database_url.get_secret_value())
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def app_engine(migrated: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(app_engine: AsyncEngine) -> Sessions:
    return create_sessions(app_engine)


@pytest.fixture(scope="session")
async def temporal_client(migrated: Settings) -> Client:
    return await connect(migrated)


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    configure_logging("INFO", "json")


@pytest.fixture
async def clean_tables(owner_engine: AsyncEngine) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE audit_log, files, memberships, tenant_quotas, tenant_role_permissions,"
                " tenant_usage, tenant_alerts, payments, auth_sessions, invitations,"
                " notifications_sent, storage_migration_items, storage_migrations,"
                " file_permissions, file_shares, group_members, groups, upload_parts,"
                " upload_sessions, idempotency_records, users"
                " RESTART IDENTITY"
            )
        )
        await conn.execute(
            text("DELETE FROM tenants WHERE id <> CAST(:platform AS uuid)"),
            {"platform": PLATFORM_TENANT_ID},
        )


@pytest.fixture
def settings(migrated: Settings, tmp_path: Path, clean_tables: None) -> Settings:
    """Per-test settings: a fresh task queue prefix and storage root."""
    return migrated.model_copy(
        update={
            "task_queue_prefix": f"t-{uuid.uuid4().hex[:12]}-",
            "storage_root": tmp_path / "storage",
        }
    )


@pytest.fixture
async def resources(
    settings: Settings, app_engine: AsyncEngine, sessions: Sessions, mailbox: Mailbox
) -> AsyncIterator[WorkerResources]:
    from adx_core.notifications import notifier_from_settings
    from adx_core.payments import ManualProvider
    from adx_core.storage import StorageRegistry

    stores = StorageRegistry(settings)
    yield WorkerResources(
        settings=settings,
        engine=app_engine,
        sessions=sessions,
        stores=stores,
        notifier=notifier_from_settings(settings),
        payments=ManualProvider(),
    )
    # The engine is the session's; the storage clients (an aiohttp session for Azure) are
    # this test's.
    await stores.close()


@pytest.fixture
async def tenants_worker(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> AsyncIterator[Worker]:
    worker = build_tenants_worker(temporal_client, resources, settings.task_queue("tenants"))
    async with worker:
        yield worker


@pytest.fixture
def worker_with(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> WorkerFactory:
    """A tenants worker on this test's task queue with some activities replaced by fakes."""

    def make(*fakes: Callable[..., Any]) -> Worker:
        return tenants_worker_with(
            temporal_client, resources, settings.task_queue("tenants"), fakes
        )

    return make


TokenFactory = Callable[..., str]


@pytest.fixture
def token(settings: Settings) -> TokenFactory:
    def make(
        role: Role = Role.PLATFORM_ADMIN,
        tenant_id: str = PLATFORM_TENANT_ID,
        user_id: str | None = None,
        ttl_seconds: int | None = None,
    ) -> str:
        return mint_token(
            settings,
            user_id=user_id or str(uuid.uuid4()),
            tenant_id=tenant_id,
            roles=[role],
            ttl_seconds=ttl_seconds,
        )

    return make


@pytest.fixture
async def api(
    settings: Settings, temporal_client: Client, sessions: Sessions
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    from adx_api.app import create_app

    app = create_app(settings, temporal=temporal_client, sessions=sessions)
    async with TestClient(TestServer(app)) as client:
        yield client


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("ADX_ENV", "test")


@pytest.fixture(scope="session")
def traces() -> Iterator[TraceReceiver]:
    """A real OTLP receiver, with this process's tracing exporting to it.

    OpenTelemetry allows one global tracer provider per process, so every test that
    looks at spans shares this one; call ``telemetry.flush_tracing()`` before reading.
    """
    with TraceReceiver() as receiver:
        telemetry.configure_tracing(
            Settings(otlp_endpoint=receiver.endpoint, service_name="adx-test"), "tests"
        )
        yield receiver
        telemetry.shutdown_tracing()


# Object storage servers, one of each per session; a test that stops a server starts its own.


def _serving(server: StorageServer) -> Iterator[StorageServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(session_dir: Path) -> Iterator[StorageServer]:
    from tests.support.moto_server import MotoServer

    yield from _serving(MotoServer(session_dir / "moto"))


@pytest.fixture(scope="session")
def gcs_server(session_dir: Path) -> Iterator[StorageServer]:
    from tests.support.gcs_emulator import GcsEmulator

    yield from _serving(GcsEmulator(session_dir / "gcs"))


@pytest.fixture(scope="session")
def azure_server(session_dir: Path) -> Iterator[StorageServer]:
    from tests.support.azurite import Azurite

    yield from _serving(Azurite(session_dir / "azurite"))


def _require_clamd() -> None:
    if ClamdServer.available():
        return
    reason = "clamd is not installed (Debian: apt-get install clamav-daemon)"
    if os.environ.get("CI"):
        # .ci/run installs clamav-daemon: a missing clamd there is a broken set-up, not a skip.
        pytest.fail(f"{reason}, but CI must run the scanning tests")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def clamd_server(session_dir: Path) -> Iterator[ClamdServer]:
    """A real clamd on loopback (TCP and a Unix socket) that knows the EICAR test file."""
    _require_clamd()
    server = ClamdServer(session_dir / "clamd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clamd_factory(tmp_path: Path) -> Iterator[ClamdFactory]:
    """Start a clamd of this test's own (``ClamdServer`` keyword arguments); all are
    stopped at the end of the test, whatever the test did to them."""
    _require_clamd()
    servers: list[ClamdServer] = []

    def start(**options: Any) -> ClamdServer:
        server = ClamdServer(tmp_path / f"clamd-{len(servers)}", **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
