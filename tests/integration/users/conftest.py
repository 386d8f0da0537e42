"""Fixtures for the users domain: a users worker (optionally with fake activities), a
real Redis server, and tenants and users seeded as the schema owner."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from adx_core.auth import Role, mint_token
from adx_core.cache import InProcessCache, RedisCache, TenantContextCache
from adx_core.contracts.permissions import DEFAULT_ROLE_PERMISSIONS
from adx_core.contracts.plans import PLANS, Plan
from adx_core.settings import Settings
from adx_workers.common.notify import NotificationActivities
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from adx_workers.users.activities import UserActivities
from adx_workers.users.worker import WORKFLOWS
from tests.support.redis import RedisServer
from tests.support.workers import activity_name

Headers = dict[str, str]

INJECTED = "InjectedFailure"


def failing(method: Callable[..., Any], *, after_work: bool) -> Callable[..., Any]:
    """A fake registered under ``method``'s activity name that fails permanently; with
    ``after_work`` it first does the real work, like a step that crashed after its commit,
    so that the undo has something to clean up."""
    name = activity_name(method)
    signature = inspect.signature(method, eval_str=True)
    (param,) = signature.parameters.values()

    async def fake(arg: Any) -> Any:
        if after_work:
            await method(arg)
        raise ApplicationError(f"injected failure in {name}", type=INJECTED, non_retryable=True)

    fake.__annotations__ = {"arg": param.annotation, "return": signature.return_annotation}
    return activity.defn(name=name)(fake)


class NoCache:
    """A cache that never holds anything: for fakes that call the real activities."""

    name = "none"

    async def get(self, tenant_id: str) -> None:
        return None

    async def set(self, tenant_id: str, value: dict[str, Any]) -> None:
        return None

    async def invalidate(self, tenant_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class UsersWorker:
    """A users worker and the activities object it runs (its ``context_loads`` counts
    tenant contexts read from the database rather than the cache)."""

    worker: Worker
    activities: UserActivities
    cache: TenantContextCache

    async def __aenter__(self) -> UsersWorker:
        await self.worker.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.worker.__aexit__(None, None, None)


UsersWorkerFactory = Callable[..., UsersWorker]


@pytest.fixture
def users_worker_with(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> UsersWorkerFactory:
    """A users worker on this test's task queue; ``fakes`` replace activities of the same
    name. ``async with users_worker_with(fake, cache=...) as w: ...``"""

    def make(*fakes: Callable[..., Any], cache: TenantContextCache | None = None) -> UsersWorker:
        chosen = cache or InProcessCache(settings.tenant_context_ttl_seconds)
        activities = UserActivities(resources.sessions, settings, chosen)
        notify = NotificationActivities(resources.sessions, resources.notifier)
        by_name = {activity_name(a): a for a in [*activities.all(), notify.send_notification]}
        for fake in fakes:
            assert activity_name(fake) in by_name, f"no activity named {activity_name(fake)}"
            by_name[activity_name(fake)] = fake
        worker = Worker(
            temporal_client,
            task_queue=settings.task_queue("users"),
            workflows=WORKFLOWS,
            activities=list(by_name.values()),
            workflow_runner=workflow_runner(),
        )
        return UsersWorker(worker, activities, chosen)

    return make


@pytest.fixture
async def users_worker(users_worker_with: UsersWorkerFactory) -> AsyncIterator[UsersWorker]:
    async with users_worker_with() as running:
        yield running


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer(session_dir / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_cache(redis_server: RedisServer, settings: Settings) -> AsyncIterator[RedisCache]:
    cache = RedisCache(redis_server.url, settings.tenant_context_ttl_seconds)
    await cache._redis.flushdb()
    try:
        yield cache
    finally:
        await cache.close()


@dataclass
class World:
    """Tenants and users written as the owner (past RLS), and tokens for them."""

    engine: AsyncEngine
    settings: Settings
    tenants: dict[str, uuid.UUID] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)

    async def tenant(
        self, slug: str, *, status: str = "active", plan: Plan = Plan.FREE
    ) -> uuid.UUID:
        tenant_id = uuid.uuid4()
        quotas = PLANS[plan].quotas
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix,"
                    " settings) VALUES (:id, :slug, :name, :plan, :status, :prefix,"
                    " CAST(:settings AS jsonb))"
                ),
                {
                    "id": tenant_id,
                    "slug": slug,
                    "name": slug.title(),
                    "plan": plan.value,
                    "status": status,
                    "prefix": f"tenants/{tenant_id}/",
                    "settings": '{"locale": "en"}',
                },
            )
            for role, permissions in DEFAULT_ROLE_PERMISSIONS.items():
                for permission in permissions:
                    await conn.execute(
                        text(
                            "INSERT INTO tenant_role_permissions (tenant_id, role, permission)"
                            " VALUES (:t, :r, :p)"
                        ),
                        {"t": tenant_id, "r": role, "p": permission},
                    )
            await conn.execute(
                text(
                    "INSERT INTO tenant_quotas (tenant_id, storage_bytes, files, users, db_rows,"
                    " file_bytes, features) VALUES (:t, :s, :f, :u, :d, :b,"
                    " CAST(:features AS jsonb))"
                ),
                {
                    "t": tenant_id,
                    "s": quotas.storage_bytes,
                    "f": quotas.files,
                    "u": quotas.users,
                    "d": quotas.db_rows,
                    "b": quotas.file_bytes,
                    "features": '["files"]',
                },
            )
        self.tenants[slug] = tenant_id
        return tenant_id

    async def user(
        self,
        email: str,
        memberships: Sequence[tuple[uuid.UUID, str]],
        *,
        active: uuid.UUID | None = None,
        name: str | None = None,
    ) -> uuid.UUID:
        user_id = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, name, active_tenant_id)"
                    " VALUES (:id, :email, :name, :active)"
                ),
                {
                    "id": user_id,
                    "email": email,
                    "name": name or email.split("@")[0],
                    "active": active,
                },
            )
            for tenant_id, role in memberships:
                await conn.execute(
                    text("INSERT INTO memberships (tenant_id, user_id, role) VALUES (:t, :u, :r)"),
                    {"t": tenant_id, "u": user_id, "r": role},
                )
        self.users[email] = user_id
        return user_id

    def token(self, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str = "member") -> str:
        return mint_token(
            self.settings, user_id=str(user_id), tenant_id=str(tenant_id), roles=[Role(role)]
        )

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(sql), params)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def state(self) -> dict[str, Any]:
        """Everything a users workflow may touch, for before/after comparisons."""
        return {
            "users": await self.rows(
                "SELECT id, email, name, status, active_tenant_id FROM users ORDER BY id"
            ),
            "memberships": await self.rows(
                "SELECT tenant_id, user_id, role FROM memberships ORDER BY tenant_id, user_id"
            ),
            "invitations": await self.rows("SELECT id, tenant_id, user_id FROM invitations"),
            "live_sessions": await self.rows(
                "SELECT id FROM auth_sessions WHERE revoked_at IS NULL"
            ),
        }


@pytest.fixture
def world(owner_engine: AsyncEngine, settings: Settings) -> World:
    return World(owner_engine, settings)
