"""Activities of tenant_deprovisioning_workflow. Each is safe to run again: a second run
finds the work done and changes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core import context
from adx_core.contracts.tenants import (
    EXPORT_TENANT_ACTIVITY,
    FINISH_DEPROVISIONING_ACTIVITY,
    LOAD_TENANT_ACTIVITY,
    PLATFORM_TENANT_ID,
    REMOVE_TENANT_DATA_ACTIVITY,
    REMOVE_TENANT_STORAGE_ACTIVITY,
    SUSPEND_TENANT_ACTIVITY,
    TENANT_NOT_FOUND,
    DeprovisioningSummary,
    ExportResult,
    RemoveDataResult,
    RemoveStorageResult,
    StatusResult,
    TenantRef,
    TenantSnapshot,
    TenantStatus,
)
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import (
    AuditEntry,
    AuthSession,
    File,
    Invitation,
    Membership,
    NotificationSent,
    TenantAlert,
    TenantQuota,
    TenantRolePermission,
    TenantUsage,
    User,
)
from adx_core.db.repositories import AuditRepository, MembershipRepository, TenantRepository
from adx_core.logging import get_logger
from adx_core.storage import StorageProvider, StorageRegistry, tenant_prefix

log = get_logger(__name__)

# Rows removed with the tenant. The tenant row stays as the record that it existed and
# was removed; its audit log and payments stay too (accounting and legal retention).
_REMOVED = (
    AuthSession,
    Invitation,
    TenantAlert,
    TenantUsage,
    TenantQuota,
    TenantRolePermission,
    NotificationSent,
    File,
)


def export_prefix(tenant_id: str) -> str:
    """Where an export goes: outside the tenant's own prefix, which is about to be removed."""
    return f"exports/{uuid.UUID(tenant_id)}/"


def _correlation_id() -> str | None:
    ctx = context.current()
    return ctx.correlation_id if ctx else None


class RemovalActivities:
    def __init__(self, sessions: Sessions, stores: StorageRegistry) -> None:
        self._sessions = sessions
        self._stores = stores

    async def _storage_of(self, tenant_id: uuid.UUID) -> StorageProvider:
        """The provider the tenant's files are in now (a migration may have moved them)."""
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await TenantRepository(session).get(tenant_id)
        return self._stores.get(tenant.storage_provider if tenant else None)

    @activity.defn(name=LOAD_TENANT_ACTIVITY)
    async def load_tenant(self, ref: TenantRef) -> TenantSnapshot:
        tenant_id = uuid.UUID(ref.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await TenantRepository(session).get(tenant_id)
            if tenant is None:
                raise ApplicationError("no such tenant", type=TENANT_NOT_FOUND, non_retryable=True)
            admins = await MembershipRepository(session).admin_emails()
        return TenantSnapshot(
            tenant_id=ref.tenant_id,
            slug=tenant.slug,
            display_name=tenant.display_name,
            status=TenantStatus(tenant.status),
            storage_prefix=tenant.storage_prefix,
            admin_emails=admins,
        )

    @activity.defn(name=SUSPEND_TENANT_ACTIVITY)
    async def suspend_tenant(self, ref: TenantRef) -> StatusResult:
        """Nothing new starts in a suspended tenant while its data is removed."""
        tenant_id = uuid.UUID(ref.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await TenantRepository(session).get(tenant_id)
            # Only a live tenant is suspended: a failed one stays failed, so it never takes
            # back a slug that another tenant may hold by now.
            if tenant is None or tenant.status != TenantStatus.ACTIVE.value:
                return StatusResult(changed=False)
            tenant.status = TenantStatus.SUSPENDED.value
        return StatusResult(changed=True)

    @activity.defn(name=EXPORT_TENANT_ACTIVITY)
    async def export_tenant(self, ref: TenantRef) -> ExportResult:
        """The tenant's rows as JSON and a copy of its objects, under exports/<tenant>/."""
        tenant_id = uuid.UUID(ref.tenant_id)
        target = export_prefix(ref.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tables: dict[str, list[dict[str, Any]]] = {}
            for model in (*_REMOVED, Membership, User, AuditEntry):
                found = (await session.scalars(select(model))).all()
                tables[model.__tablename__] = [_row(row) for row in found]
            tenant = await TenantRepository(session).get(tenant_id)
            if tenant is not None:
                tables["tenants"] = [_row(tenant)]
        storage = await self._storage_of(tenant_id)
        objects = await storage.copy_prefix(tenant_prefix(tenant_id), f"{target}objects/")
        manifest = {
            "tenant_id": ref.tenant_id,
            "exported_at": datetime.now(UTC).isoformat(),
            "objects": objects,
            "tables": tables,
        }
        await storage.put_bytes(
            f"{target}rows.json", json.dumps(manifest, default=str, indent=1).encode()
        )
        rows = sum(len(table) for table in tables.values())
        log.info("tenant exported", objects=objects, rows=rows)
        return ExportResult(key=target, objects=objects, rows=rows)

    @activity.defn(name=REMOVE_TENANT_STORAGE_ACTIVITY)
    async def remove_tenant_storage(self, ref: TenantRef) -> RemoveStorageResult:
        storage = await self._storage_of(uuid.UUID(ref.tenant_id))
        removed = await storage.delete_prefix(tenant_prefix(ref.tenant_id))
        return RemoveStorageResult(objects_removed=removed)

    @activity.defn(name=REMOVE_TENANT_DATA_ACTIVITY)
    async def remove_tenant_data(self, ref: TenantRef) -> RemoveDataResult:
        tenant_id = uuid.UUID(ref.tenant_id)
        removed = 0
        async with tenant_session(self._sessions, tenant_id) as session:
            # Members whose active tenant this was have none now; done while the
            # memberships still make them visible in this scope.
            await session.execute(
                update(User).where(User.active_tenant_id == tenant_id).values(active_tenant_id=None)
            )
            for model in (*_REMOVED, Membership):
                result = await session.execute(delete(model).where(model.tenant_id == tenant_id))
                removed += int(result.rowcount)  # type: ignore[attr-defined]
        log.info("tenant rows removed", rows=removed)
        return RemoveDataResult(rows_removed=removed)

    @activity.defn(name=FINISH_DEPROVISIONING_ACTIVITY)
    async def finish_deprovisioning(self, summary: DeprovisioningSummary) -> StatusResult:
        tenant_id = uuid.UUID(summary.tenant_id)
        details = {
            "objects_removed": summary.objects_removed,
            "rows_removed": summary.rows_removed,
            "export_key": summary.export_key,
        }
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await TenantRepository(session).get(tenant_id)
            if tenant is None or tenant.status == TenantStatus.DEPROVISIONED.value:
                return StatusResult(changed=False)
            tenant.status = TenantStatus.DEPROVISIONED.value
            slug = tenant.slug
            await AuditRepository(session).record(
                tenant_id=tenant_id,
                action="tenant.deprovisioned",
                actor_id=summary.requested_by,
                subject=slug,
                correlation_id=_correlation_id(),
                details=details,
            )
            # The platform's own log keeps it too, where operators look for removed
            # tenants. Same transaction, so a retry never finds one entry without the other.
            await session.execute(
                select(func.set_config("app.tenant_id", PLATFORM_TENANT_ID, True))
            )
            await AuditRepository(session).record(
                tenant_id=uuid.UUID(PLATFORM_TENANT_ID),
                action="tenant.deprovisioned",
                actor_id=summary.requested_by,
                subject=str(tenant_id),
                correlation_id=_correlation_id(),
                details={"slug": slug, **details},
            )
        return StatusResult(changed=True)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.load_tenant,
            self.suspend_tenant,
            self.export_tenant,
            self.remove_tenant_storage,
            self.remove_tenant_data,
            self.finish_deprovisioning,
        ]


def _row(row: object) -> dict[str, Any]:
    table = getattr(row, "__table__")  # noqa: B009 - mapped classes only
    return {column.name: getattr(row, column.key, None) for column in table.columns}
