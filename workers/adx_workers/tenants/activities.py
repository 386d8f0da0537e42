"""Tenant activities. Each does one thing, in one transaction, idempotently."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core import context
from adx_core.contracts.tenants import (
    ACTIVATE_TENANT_ACTIVITY,
    CREATE_TENANT_RECORD_ACTIVITY,
    CREATE_TENANT_STORAGE_ACTIVITY,
    DELETE_TENANT_RECORD_ACTIVITY,
    DELETE_TENANT_STORAGE_ACTIVITY,
    SLUG_TAKEN,
    ActivateTenantInput,
    ActivateTenantResult,
    TenantRecordInput,
    TenantRecordResult,
    TenantRef,
    TenantStatus,
    TenantStorageInput,
    TenantStorageResult,
    UndoResult,
)
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.repositories import AuditRepository, TenantRepository
from adx_core.logging import get_logger
from adx_core.storage import StorageProvider, tenant_prefix

log = get_logger(__name__)


def _correlation_id() -> str | None:
    ctx = context.current()
    return ctx.correlation_id if ctx else None


class TenantActivities:
    def __init__(self, sessions: Sessions, storage: StorageProvider) -> None:
        self._sessions = sessions
        self._storage = storage

    @activity.defn(name=CREATE_TENANT_RECORD_ACTIVITY)
    async def create_tenant_record(self, request: TenantRecordInput) -> TenantRecordResult:
        tenant_id = uuid.UUID(request.tenant_id)
        try:
            async with tenant_session(self._sessions, tenant_id) as session:
                created = await TenantRepository(session).create(
                    tenant_id=tenant_id,
                    slug=request.slug,
                    display_name=request.display_name,
                    plan=request.plan.value,
                    status=TenantStatus.PROVISIONING.value,
                    storage_prefix=request.storage_prefix,
                )
                if created:
                    await AuditRepository(session).record(
                        tenant_id=tenant_id,
                        action="tenant.created",
                        actor_id=request.requested_by,
                        subject=request.slug,
                        correlation_id=_correlation_id(),
                    )
        except IntegrityError:
            # Our own row (a retry) is absorbed by ON CONFLICT; this is another tenant's slug.
            # ``from None``: the driver's error carries the SQL parameters, which would reach
            # the worker's logs and the failure in history.
            raise ApplicationError(
                f"the slug {request.slug!r} is taken", type=SLUG_TAKEN, non_retryable=True
            ) from None
        log.info("tenant record", created=created, slug=request.slug)
        return TenantRecordResult(created=created)

    @activity.defn(name=DELETE_TENANT_RECORD_ACTIVITY)
    async def delete_tenant_record(self, ref: TenantRef) -> UndoResult:
        async with tenant_session(self._sessions, ref.tenant_id) as session:
            deleted = await TenantRepository(session).delete(uuid.UUID(ref.tenant_id))
        log.info("tenant record removed", undone=deleted)
        return UndoResult(undone=deleted)

    @activity.defn(name=CREATE_TENANT_STORAGE_ACTIVITY)
    async def create_tenant_storage(self, request: TenantStorageInput) -> TenantStorageResult:
        if request.storage_prefix != tenant_prefix(request.tenant_id):
            raise ApplicationError("storage prefix does not match the tenant", non_retryable=True)
        created = await self._storage.ensure_prefix(request.storage_prefix)
        log.info("tenant storage", created=created, provider=self._storage.name)
        return TenantStorageResult(provider=self._storage.name, created=created)

    @activity.defn(name=DELETE_TENANT_STORAGE_ACTIVITY)
    async def delete_tenant_storage(self, request: TenantStorageInput) -> UndoResult:
        removed = await self._storage.delete_prefix(tenant_prefix(request.tenant_id))
        log.info("tenant storage removed", objects=removed)
        return UndoResult(undone=True)

    @activity.defn(name=ACTIVATE_TENANT_ACTIVITY)
    async def activate_tenant(self, request: ActivateTenantInput) -> ActivateTenantResult:
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenants = TenantRepository(session)
            tenant = await tenants.get(tenant_id)
            if tenant is None:
                raise ApplicationError("the tenant record is missing", non_retryable=True)
            if tenant.status == TenantStatus.ACTIVE.value:
                return ActivateTenantResult(activated=False)
            await tenants.set_status(tenant_id, TenantStatus.ACTIVE.value)
            await AuditRepository(session).record(
                tenant_id=tenant_id,
                action="tenant.activated",
                actor_id=request.requested_by,
                correlation_id=_correlation_id(),
            )
        return ActivateTenantResult(activated=True)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.create_tenant_record,
            self.delete_tenant_record,
            self.create_tenant_storage,
            self.delete_tenant_storage,
            self.activate_tenant,
        ]
