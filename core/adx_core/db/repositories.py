"""Tenant-scoped repositories. Each takes a session opened by ``tenant_session``.

They hold no tenant id of their own for reads: row-level security decides what is
visible. Writes set ``tenant_id`` explicitly and RLS refuses any other tenant's.
Every write is idempotent on its key, because activities that call them may be retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adx_core.db.models import AuditEntry, Tenant


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        return await self._session.get(Tenant, tenant_id)

    async def list_visible(self) -> Sequence[Tenant]:
        result = await self._session.scalars(select(Tenant).order_by(Tenant.created_at))
        return result.all()

    async def create(
        self,
        *,
        tenant_id: uuid.UUID,
        slug: str,
        display_name: str,
        plan: str,
        status: str,
        storage_prefix: str,
    ) -> bool:
        """Insert the tenant; ``False`` when a row with this id already exists (a retry)."""
        result = await self._session.execute(
            insert(Tenant)
            .values(
                id=tenant_id,
                slug=slug,
                display_name=display_name,
                plan=plan,
                status=status,
                storage_prefix=storage_prefix,
            )
            .on_conflict_do_nothing(index_elements=[Tenant.id])
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_status(self, tenant_id: uuid.UUID, status: str) -> bool:
        result = await self._session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(status=status)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete(self, tenant_id: uuid.UUID) -> bool:
        result = await self._session.execute(delete(Tenant).where(Tenant.id == tenant_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(
        self,
        *,
        tenant_id: uuid.UUID,
        action: str,
        actor_id: str | None,
        subject: str | None = None,
        correlation_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._session.add(
            AuditEntry(
                tenant_id=tenant_id,
                action=action,
                actor_id=actor_id,
                subject=subject,
                correlation_id=correlation_id,
                details=details or {},
            )
        )
        await self._session.flush()

    async def list_recent(self, limit: int = 100) -> Sequence[AuditEntry]:
        result = await self._session.scalars(
            select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        )
        return result.all()


async def tenant_id_for_slug(session: AsyncSession, slug: str) -> uuid.UUID | None:
    """Resolve a slug across tenants. It goes through a narrow SECURITY DEFINER function,
    because RLS hides other tenants' rows from the application role by design."""
    value = await session.scalar(text("SELECT adx_tenant_id_for_slug(:slug)"), {"slug": slug})
    return value if isinstance(value, uuid.UUID) else None
