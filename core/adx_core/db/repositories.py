"""Tenant-scoped repositories. Each takes a session opened by ``tenant_session``.

They hold no tenant id of their own for reads: row-level security decides what is
visible. Writes set ``tenant_id`` explicitly and RLS refuses any other tenant's.
Every write is idempotent on its key, because activities that call them may be retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adx_core.db.models import (
    AuditEntry,
    Membership,
    Tenant,
    TenantQuota,
    TenantRolePermission,
    TenantUsage,
    User,
)


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
        storage_provider: str = "local",
    ) -> bool:
        """Insert the tenant; ``False`` when a row with this id already exists (a retry).

        A row whose provisioning failed is taken over by a new attempt under the same id
        (the operator retries a Tenant resource's failed provisioning under its uid): it
        starts again as asked, and counts as created, so that its undo applies again."""
        values = {
            "slug": slug,
            "display_name": display_name,
            "plan": plan,
            "status": status,
            "storage_prefix": storage_prefix,
            "storage_provider": storage_provider,
        }
        statement = insert(Tenant).values(id=tenant_id, **values)
        result = await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[Tenant.id],
                set_={**values, "failure": None},
                where=Tenant.status == "failed",
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_status(self, tenant_id: uuid.UUID, status: str) -> bool:
        result = await self._session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(status=status)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_failed(self, tenant_id: uuid.UUID, failure: dict[str, str]) -> bool:
        """Record why provisioning failed. The row stays (its slug is free again)."""
        result = await self._session.execute(
            update(Tenant)
            # ``active`` too: a cancel that meets the last step succeeding still rolls back.
            .where(Tenant.id == tenant_id, Tenant.status.in_(("provisioning", "active")))
            .values(status="failed", failure=failure)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_settings(self, tenant_id: uuid.UUID, settings: dict[str, Any]) -> None:
        await self._session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(settings=settings)
        )

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


class TenantSetupRepository:
    """The rows that make a tenant usable: quotas and features, role permissions."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def put_quotas(
        self,
        tenant_id: uuid.UUID,
        quotas: dict[str, int],
        features: list[str],
        overrides: dict[str, int],
    ) -> bool:
        """Insert the quota row, or bring it to these values; ``True`` if it was new."""
        existed = await self._session.get(TenantQuota, tenant_id) is not None
        await self._session.execute(
            insert(TenantQuota)
            .values(tenant_id=tenant_id, features=features, overrides=overrides, **quotas)
            .on_conflict_do_update(
                index_elements=[TenantQuota.tenant_id],
                set_={"features": features, "overrides": overrides, **quotas},
            )
        )
        return not existed

    async def grant_permissions(
        self, tenant_id: uuid.UUID, permissions: dict[str, tuple[str, ...]]
    ) -> None:
        rows = [
            {"tenant_id": tenant_id, "role": role, "permission": permission}
            for role, granted in permissions.items()
            for permission in granted
        ]
        await self._session.execute(
            insert(TenantRolePermission).values(rows).on_conflict_do_nothing()
        )

    async def permission_count(self) -> int:
        return int(
            await self._session.scalar(select(func.count()).select_from(TenantRolePermission)) or 0
        )

    async def remove(self, tenant_id: uuid.UUID) -> int:
        removed = 0
        for model in (TenantRolePermission, TenantQuota, TenantUsage):
            result = await self._session.execute(delete(model).where(model.tenant_id == tenant_id))
            removed += int(result.rowcount)  # type: ignore[attr-defined]
        return removed


class MembershipRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def create_identity(self, user_id: uuid.UUID, email: str, name: str) -> uuid.UUID:
        """The identity for ``email``: created with ``user_id`` unless one exists already
        (possibly in another tenant, hence the lookup function)."""
        found = await self._session.scalar(
            text("SELECT adx_ensure_identity(:id, :email, :name)"),
            {"id": user_id, "email": email, "name": name},
        )
        if not isinstance(found, uuid.UUID):  # pragma: no cover - the function always returns
            raise RuntimeError("the identity could not be created")
        return found

    async def add(self, tenant_id: uuid.UUID, user_id: uuid.UUID, role: str) -> bool:
        result = await self._session.execute(
            insert(Membership)
            .values(tenant_id=tenant_id, user_id=user_id, role=role)
            .on_conflict_do_nothing()
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        result = await self._session.execute(
            delete(Membership).where(
                Membership.tenant_id == tenant_id, Membership.user_id == user_id
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def admin_emails(self) -> list[str]:
        result = await self._session.scalars(
            select(User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.role == "tenant-admin")
            .order_by(User.email)
        )
        return list(result.all())


async def user_id_for_email(session: AsyncSession, email: str) -> uuid.UUID | None:
    """Resolve an e-mail across tenants (an identity may belong to several)."""
    value = await session.scalar(text("SELECT adx_user_id_for_email(:email)"), {"email": email})
    return value if isinstance(value, uuid.UUID) else None


async def memberships_of_user(session: AsyncSession, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every live tenant the user belongs to, with their role there."""
    result = await session.execute(
        text("SELECT * FROM adx_memberships_of_user(:user)"), {"user": user_id}
    )
    return [dict(row._mapping) for row in result]
