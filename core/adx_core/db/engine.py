"""The async engine and session factory, and the tenant scope every query runs in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from adx_core.settings import Settings

Sessions = async_sessionmaker[AsyncSession]


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    return create_async_engine(
        url or settings.database_url.get_secret_value(),
        pool_size=settings.database_pool_size,
        pool_pre_ping=True,
        # asyncpg caches prepared statements per connection; RLS policies are evaluated at
        # execution, so cached plans stay correct across tenants.
        connect_args={"server_settings": {"application_name": settings.service_name}},
    )


def create_sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


class InvalidTenantIdError(ValueError):
    pass


def parse_tenant_id(tenant_id: str | uuid.UUID) -> uuid.UUID:
    if isinstance(tenant_id, uuid.UUID):
        return tenant_id
    try:
        return uuid.UUID(tenant_id)
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidTenantIdError(f"not a tenant id: {tenant_id!r}") from exc


@asynccontextmanager
async def tenant_session(
    sessions: Sessions, tenant_id: str | uuid.UUID
) -> AsyncIterator[AsyncSession]:
    """One transaction in which row-level security sees only ``tenant_id``'s rows.

    The setting is transaction-local (``set_config(..., true)``): it cannot leak to the next
    user of the pooled connection, and a query outside this scope sees no tenant rows at all.
    """
    tid = parse_tenant_id(tenant_id)
    async with sessions() as session, session.begin():
        await session.execute(select(func.set_config("app.tenant_id", str(tid), True)))
        yield session
