"""Activities of tenant_provisioning_workflow. Each does one thing, in one transaction,
idempotently: a retry after a crash finds its own earlier work and does not apply it twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core import context
from adx_core.contracts.permissions import DEFAULT_ROLE_PERMISSIONS
from adx_core.contracts.plans import (
    PLANS,
    QuotaOverrideError,
    QuotaOverrides,
    effective_quotas,
    validate_overrides,
)
from adx_core.contracts.tenants import (
    ACTIVATE_TENANT_ACTIVITY,
    CREATE_ADMIN_USER_ACTIVITY,
    CREATE_TENANT_RECORD_ACTIVITY,
    CREATE_TENANT_STORAGE_ACTIVITY,
    DELETE_TENANT_STORAGE_ACTIVITY,
    INVALID_TENANT_REQUEST,
    MARK_TENANT_FAILED_ACTIVITY,
    REMOVE_ADMIN_USER_ACTIVITY,
    SETUP_TENANT_DATABASE_ACTIVITY,
    SLUG_TAKEN,
    TEARDOWN_TENANT_DATABASE_ACTIVITY,
    VALIDATE_TENANT_REQUEST_ACTIVITY,
    ActivateTenantInput,
    ActivateTenantResult,
    AdminUserInput,
    AdminUserResult,
    TenantDatabaseInput,
    TenantDatabaseResult,
    TenantFailure,
    TenantRecordInput,
    TenantRecordResult,
    TenantRef,
    TenantStatus,
    TenantStorageInput,
    TenantStorageResult,
    TenantValidationInput,
    TenantValidationResult,
    UndoResult,
)
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import User
from adx_core.db.repositories import (
    AuditRepository,
    MembershipRepository,
    TenantRepository,
    TenantSetupRepository,
    memberships_of_user,
    tenant_id_for_slug,
    user_id_for_email,
)
from adx_core.logging import get_logger
from adx_core.storage import StorageProvider, tenant_prefix

log = get_logger(__name__)

# What a new tenant starts with; tenant admins may change them later.
DEFAULT_TENANT_SETTINGS: dict[str, Any] = {"locale": "en", "timezone": "UTC"}
# Keeps the failure recorded on the tenant (and shown by the API) a readable size.
MAX_FAILURE_CAUSE = 500


def _correlation_id() -> str | None:
    ctx = context.current()
    return ctx.correlation_id if ctx else None


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=INVALID_TENANT_REQUEST, non_retryable=True)


class TenantActivities:
    def __init__(self, sessions: Sessions, storage: StorageProvider) -> None:
        self._sessions = sessions
        self._storage = storage

    @activity.defn(name=VALIDATE_TENANT_REQUEST_ACTIVITY)
    async def validate_tenant_request(
        self, request: TenantValidationInput
    ) -> TenantValidationResult:
        if request.plan not in PLANS:
            raise _invalid(f"unknown plan {request.plan!r}")
        if request.quotas is not None:
            try:
                validate_overrides(request.plan, request.quotas)
            except QuotaOverrideError as exc:
                raise _invalid(str(exc)) from None
        async with self._sessions() as session:
            holder = await tenant_id_for_slug(session, request.slug)
        # Our own tenant holds the slug when this is a retry after the record was made.
        if holder is not None and str(holder) != request.tenant_id:
            raise ApplicationError(
                f"the slug {request.slug!r} is taken", type=SLUG_TAKEN, non_retryable=True
            )
        return TenantValidationResult(valid=True)

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
                    # Where its files go; a whole-tenant migration changes it later.
                    storage_provider=self._storage.name,
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
            # Our own row (a retry) is absorbed by ON CONFLICT; this is a live tenant's slug,
            # taken since validation. ``from None``: the driver's error carries the SQL
            # parameters, which would reach the worker's logs and the failure in history.
            raise ApplicationError(
                f"the slug {request.slug!r} is taken", type=SLUG_TAKEN, non_retryable=True
            ) from None
        log.info("tenant record", created=created, slug=request.slug)
        return TenantRecordResult(created=created)

    @activity.defn(name=MARK_TENANT_FAILED_ACTIVITY)
    async def mark_tenant_failed(self, failure: TenantFailure) -> UndoResult:
        """The record's undo: the tenant stays on record as ``failed`` with the step and the
        cause, and its slug is free for a new attempt."""
        tenant_id = uuid.UUID(failure.tenant_id)
        recorded = {"step": failure.step, "cause": failure.cause[:MAX_FAILURE_CAUSE]}
        async with tenant_session(self._sessions, tenant_id) as session:
            marked = await TenantRepository(session).mark_failed(tenant_id, recorded)
            if marked:
                await AuditRepository(session).record(
                    tenant_id=tenant_id,
                    action="tenant.provisioning_failed",
                    actor_id=failure.requested_by,
                    correlation_id=_correlation_id(),
                    details=recorded,
                )
        log.info("tenant marked failed", undone=marked, step=failure.step)
        return UndoResult(undone=marked)

    @activity.defn(name=SETUP_TENANT_DATABASE_ACTIVITY)
    async def setup_tenant_database(self, request: TenantDatabaseInput) -> TenantDatabaseResult:
        """Quotas and features, the roles' default permissions and the default settings,
        then a check that the tenant's RLS scope sees exactly what was written."""
        tenant_id = uuid.UUID(request.tenant_id)
        quotas = asdict(effective_quotas(request.plan, request.quotas))
        overrides = {k: v for k, v in asdict(request.quotas or QuotaOverrides()).items() if v}
        async with tenant_session(self._sessions, tenant_id) as session:
            setup = TenantSetupRepository(session)
            created = await setup.put_quotas(
                tenant_id, quotas, list(PLANS[request.plan].features), overrides
            )
            await setup.grant_permissions(tenant_id, DEFAULT_ROLE_PERMISSIONS)
            await TenantRepository(session).set_settings(tenant_id, DEFAULT_TENANT_SETTINGS)
            permissions = await setup.permission_count()
        expected = sum(len(granted) for granted in DEFAULT_ROLE_PERMISSIONS.values())
        if permissions != expected:
            # The scope shows another tenant's rows, or hides our own: never go on.
            raise ApplicationError(
                f"the tenant's RLS scope shows {permissions} permission rows, not {expected}",
                non_retryable=True,
            )
        return TenantDatabaseResult(created=created, permissions=permissions)

    @activity.defn(name=TEARDOWN_TENANT_DATABASE_ACTIVITY)
    async def teardown_tenant_database(self, ref: TenantRef) -> UndoResult:
        async with tenant_session(self._sessions, ref.tenant_id) as session:
            removed = await TenantSetupRepository(session).remove(uuid.UUID(ref.tenant_id))
        return UndoResult(undone=removed > 0)

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

    @activity.defn(name=CREATE_ADMIN_USER_ACTIVITY)
    async def create_admin_user(self, request: AdminUserInput) -> AdminUserResult:
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            members = MembershipRepository(session)
            user_id = await members.create_identity(
                uuid.UUID(request.user_id), request.email, request.name
            )
            added = await members.add(tenant_id, user_id, "tenant-admin")
            user = await session.get(User, user_id)  # visible now: a member of this tenant
            if user is not None and user.active_tenant_id is None:
                user.active_tenant_id = tenant_id
            if added:
                await AuditRepository(session).record(
                    tenant_id=tenant_id,
                    action="membership.created",
                    actor_id=request.requested_by,
                    subject=str(user_id),
                    correlation_id=_correlation_id(),
                    details={"role": "tenant-admin"},
                )
        return AdminUserResult(
            user_id=str(user_id), created_identity=str(user_id) == request.user_id
        )

    @activity.defn(name=REMOVE_ADMIN_USER_ACTIVITY)
    async def remove_admin_user(self, request: AdminUserInput) -> UndoResult:
        """Remove the membership; remove the identity too if this workflow created it and
        it belongs nowhere else. An identity that existed before stays untouched."""
        tenant_id = uuid.UUID(request.tenant_id)
        ours = uuid.UUID(request.user_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            user = await session.get(User, ours)  # visible only while still a member here
            elsewhere = [
                m for m in await memberships_of_user(session, ours) if m["tenant_id"] != tenant_id
            ]
            if user is not None and not elsewhere:
                await session.delete(user)  # the membership goes with it (ON DELETE CASCADE)
                return UndoResult(undone=True)
            # The identity existed before (under another id): remove only our membership.
            existing = await user_id_for_email(session, request.email) or ours
            removed = await MembershipRepository(session).remove(tenant_id, existing)
        return UndoResult(undone=removed)

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
            self.validate_tenant_request,
            self.create_tenant_record,
            self.mark_tenant_failed,
            self.setup_tenant_database,
            self.teardown_tenant_database,
            self.create_tenant_storage,
            self.delete_tenant_storage,
            self.create_admin_user,
            self.remove_admin_user,
            self.activate_tenant,
        ]
