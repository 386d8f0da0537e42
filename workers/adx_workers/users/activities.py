"""User activities: identities, memberships, invitations, sessions and the tenant context.

Each does one thing in one transaction, in the RLS scope of the tenant it acts for, and is
idempotent on its key (a user id, an invitation id, a session id), so a retry after a crash
finds its own earlier work. An identity is global but RLS shows a tenant only its members:
a user outside the tenant is found only through the SECURITY DEFINER lookups.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.auth import Role
from adx_core.cache import TenantContextCache
from adx_core.contracts.permissions import TENANT_ACCESS
from adx_core.contracts.tenants import TenantStatus
from adx_core.contracts.users import (
    ACCESS_DENIED,
    ADMIN_ROLE,
    ALREADY_MEMBER,
    CHANGE_ROLE_ACTIVITY,
    CREATE_IDENTITY_ACTIVITY,
    CREATE_INVITATION_ACTIVITY,
    CREATE_MEMBERSHIP_ACTIVITY,
    DELETE_IDENTITY_ACTIVITY,
    DELETE_INVITATION_ACTIVITY,
    DELETE_MEMBERSHIP_ACTIVITY,
    DELETE_SESSION_ACTIVITY,
    INVALID_USER_REQUEST,
    ISSUE_SESSION_TOKEN_ACTIVITY,
    LAST_TENANT_ADMIN,
    LOAD_TENANT_CONTEXT_ACTIVITY,
    LOAD_USER_FOR_UPDATE_ACTIVITY,
    NOT_A_MEMBER,
    PLATFORM_ADMIN_ROLE,
    REMOVE_MEMBERSHIP_ACTIVITY,
    RESTORE_ACTIVE_TENANT_ACTIVITY,
    RESTORE_MEMBERSHIP_ACTIVITY,
    REVOKE_SESSIONS_ACTIVITY,
    SET_ACTIVE_TENANT_ACTIVITY,
    TENANT_INACTIVE,
    TENANT_NOT_FOUND,
    TENANT_USER_ROLES,
    UPDATE_IDENTITY_ACTIVITY,
    USER_NOT_FOUND,
    USER_QUOTA_EXCEEDED,
    USER_STATUSES,
    VALIDATE_ONBOARDING_ACTIVITY,
    VALIDATE_SWITCH_ACTIVITY,
    ActiveTenantChange,
    ActiveTenantRestore,
    ActiveTenantResult,
    IdentityInput,
    IdentityResult,
    IdentityUpdate,
    IdentityUpdateResult,
    InvitationInput,
    InvitationRef,
    InvitationResult,
    MembershipInput,
    MembershipRef,
    MembershipRemovalResult,
    MembershipRestore,
    MembershipResult,
    OnboardingValidation,
    OnboardingValidationInput,
    RoleChange,
    RoleChangeResult,
    SessionRef,
    SessionRevocation,
    SessionRevocationResult,
    SessionToken,
    SessionTokenInput,
    SwitchValidation,
    SwitchValidationInput,
    TenantContext,
    TenantContextInput,
    UndoResult,
    UserState,
    UserUpdateRequest,
)
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import (
    AuthSession,
    Invitation,
    Membership,
    Tenant,
    TenantQuota,
    TenantRolePermission,
    User,
)
from adx_core.logging import get_logger
from adx_core.sessions import SessionUnavailableError, issue_session_token, revoke_sessions
from adx_core.settings import Settings

log = get_logger(__name__)

QUOTA_FIELDS = ("storage_bytes", "files", "users", "db_rows", "file_bytes")


def _refuse(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


async def user_id_for_email(session: AsyncSession, email: str) -> uuid.UUID | None:
    """Any tenant's identity with this e-mail: RLS hides non-members, so ask the narrow
    SECURITY DEFINER function, which returns nothing but the id."""
    value = await session.scalar(text("SELECT adx_user_id_for_email(:email)"), {"email": email})
    return value if isinstance(value, uuid.UUID) else None


async def role_permissions(session: AsyncSession, role: str) -> list[str]:
    result = await session.scalars(
        select(TenantRolePermission.permission)
        .where(TenantRolePermission.role == role)
        .order_by(TenantRolePermission.permission)
    )
    return list(result.all())


async def _locked_admins(session: AsyncSession, tenant_id: uuid.UUID) -> set[uuid.UUID]:
    # Locking every admin row serialises concurrent demotions and removals: two requests
    # that each demote one of two admins cannot both see "another admin remains".
    result = await session.scalars(
        select(Membership.user_id)
        .where(Membership.tenant_id == tenant_id, Membership.role == ADMIN_ROLE)
        .with_for_update()
    )
    return set(result.all())


def _check_keeps_an_admin(admins: set[uuid.UUID], user_id: uuid.UUID) -> None:
    if user_id in admins and len(admins) <= 1:
        raise _refuse(
            LAST_TENANT_ADMIN,
            "the tenant's last tenant-admin cannot be removed or demoted; make another "
            "user tenant-admin first",
        )


class UserActivities:
    def __init__(self, sessions: Sessions, settings: Settings, cache: TenantContextCache) -> None:
        self._sessions = sessions
        self._settings = settings
        self._cache = cache
        # Tenant contexts read from the database (not the cache), for metrics and tests.
        self.context_loads = 0

    # user_onboarding_workflow

    @activity.defn(name=VALIDATE_ONBOARDING_ACTIVITY)
    async def validate_onboarding(self, request: OnboardingValidationInput) -> OnboardingValidation:
        if request.role not in TENANT_USER_ROLES:
            raise _refuse(INVALID_USER_REQUEST, f"unknown role {request.role!r}")
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                raise _refuse(TENANT_NOT_FOUND, "no such tenant")
            if tenant.status != TenantStatus.ACTIVE.value:
                raise _refuse(TENANT_INACTIVE, f"the tenant is {tenant.status}, not active")
            existing = await user_id_for_email(session, request.email)
            if existing is not None:
                member = await session.get(Membership, (tenant_id, existing))
                if member is not None:
                    raise _refuse(ALREADY_MEMBER, "the user is already a member of the tenant")
            quota = await session.scalar(select(TenantQuota.users))
            members = await session.scalar(select(func.count()).select_from(Membership)) or 0
            if quota is not None and members >= quota:
                raise _refuse(USER_QUOTA_EXCEEDED, f"the plan allows {quota} users")
            return OnboardingValidation(
                tenant_slug=tenant.slug,
                tenant_name=tenant.display_name,
                existing_user_id=str(existing) if existing else None,
            )

    @activity.defn(name=CREATE_IDENTITY_ACTIVITY)
    async def create_identity(self, request: IdentityInput) -> IdentityResult:
        """Reuse the identity with this e-mail, or create one under ``user_id``. A retry finds
        the identity it created (same id), so ``created`` stays true."""
        new_id = uuid.UUID(request.user_id)
        async with tenant_session(self._sessions, request.tenant_id) as session:
            existing = await user_id_for_email(session, request.email)
            if existing is None:
                await session.execute(
                    insert(User)
                    .values(id=new_id, email=request.email.lower(), name=request.name)
                    .on_conflict_do_nothing()
                )
                existing = await user_id_for_email(session, request.email)
        if existing is None:  # only if the insert conflicted on the id: never with uuid4
            raise _refuse(INVALID_USER_REQUEST, "the user id is taken")
        log.info("user identity", created=existing == new_id)
        return IdentityResult(user_id=str(existing), created=existing == new_id)

    @activity.defn(name=DELETE_IDENTITY_ACTIVITY)
    async def delete_identity(self, request: IdentityInput) -> UndoResult:
        """Delete the identity only if this onboarding created it (its id is ours) and no other
        tenant has taken it up meanwhile: an existing person is never deleted."""
        user_id = uuid.UUID(request.user_id)
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            if await user_id_for_email(session, request.email) != user_id:
                return UndoResult(undone=False)
            others = await session.scalar(
                text(
                    "SELECT count(*) FROM adx_memberships_of_user(:user) WHERE tenant_id <> :tenant"
                ),
                {"user": user_id, "tenant": tenant_id},
            )
            if others:
                return UndoResult(undone=False)
            # RLS lets a tenant delete only its members, and the membership undo ran first:
            # a membership for this transaction makes the row deletable; the delete
            # cascades to it.
            await session.execute(
                insert(Membership)
                .values(tenant_id=tenant_id, user_id=user_id, role="viewer")
                .on_conflict_do_nothing()
            )
            result = await session.execute(delete(User).where(User.id == user_id))
        return UndoResult(undone=_rowcount(result) > 0)

    @activity.defn(name=CREATE_MEMBERSHIP_ACTIVITY)
    async def create_membership(self, request: MembershipInput) -> MembershipResult:
        if request.role not in TENANT_USER_ROLES:
            raise _refuse(INVALID_USER_REQUEST, f"unknown role {request.role!r}")
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            result = await session.execute(
                insert(Membership)
                .values(tenant_id=tenant_id, user_id=uuid.UUID(request.user_id), role=request.role)
                .on_conflict_do_nothing()
            )
            permissions = await role_permissions(session, request.role)
        return MembershipResult(created=_rowcount(result) > 0, permissions=permissions)

    @activity.defn(name=DELETE_MEMBERSHIP_ACTIVITY)
    async def delete_membership(self, ref: MembershipRef) -> UndoResult:
        tenant_id = uuid.UUID(ref.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            result = await session.execute(
                delete(Membership).where(
                    Membership.tenant_id == tenant_id,
                    Membership.user_id == uuid.UUID(ref.user_id),
                )
            )
        return UndoResult(undone=_rowcount(result) > 0)

    @activity.defn(name=CREATE_INVITATION_ACTIVITY)
    async def create_invitation(self, request: InvitationInput) -> InvitationResult:
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            result = await session.execute(
                insert(Invitation)
                .values(
                    id=uuid.UUID(request.invitation_id),
                    tenant_id=tenant_id,
                    user_id=uuid.UUID(request.user_id),
                    role=request.role,
                    expires_at=request.expires_at,
                )
                .on_conflict_do_nothing(index_elements=[Invitation.id])
            )
        return InvitationResult(created=_rowcount(result) > 0)

    @activity.defn(name=DELETE_INVITATION_ACTIVITY)
    async def delete_invitation(self, ref: InvitationRef) -> UndoResult:
        async with tenant_session(self._sessions, ref.tenant_id) as session:
            result = await session.execute(
                delete(Invitation).where(Invitation.id == uuid.UUID(ref.invitation_id))
            )
        return UndoResult(undone=_rowcount(result) > 0)

    # user_update_workflow

    @activity.defn(name=LOAD_USER_FOR_UPDATE_ACTIVITY)
    async def load_user_for_update(self, request: UserUpdateRequest) -> UserState:
        """The user as they are now (what the undos restore), and an early answer for a
        change that cannot be made."""
        if request.role is not None and request.role not in TENANT_USER_ROLES:
            raise _refuse(INVALID_USER_REQUEST, f"unknown role {request.role!r}")
        if request.status is not None and request.status not in USER_STATUSES:
            raise _refuse(INVALID_USER_REQUEST, f"unknown status {request.status!r}")
        tenant_id, user_id = uuid.UUID(request.tenant_id), uuid.UUID(request.user_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            row = (
                await session.execute(
                    select(User, Membership.role)
                    .join(Membership, Membership.user_id == User.id)
                    .where(User.id == user_id, Membership.tenant_id == tenant_id)
                )
            ).one_or_none()
            if row is None:
                raise _refuse(USER_NOT_FOUND, "no such user in this tenant")
            user, role = row
            demoted = request.remove or (request.role is not None and request.role != ADMIN_ROLE)
            if role == ADMIN_ROLE and demoted:
                admins = await session.scalars(
                    select(Membership.user_id).where(Membership.role == ADMIN_ROLE)
                )
                _check_keeps_an_admin(set(admins.all()), user_id)
            return UserState(
                user_id=str(user.id),
                tenant_id=str(tenant_id),
                email=user.email,
                name=user.name,
                status=user.status,
                role=role,
                active_here=user.active_tenant_id == tenant_id,
            )

    @activity.defn(name=UPDATE_IDENTITY_ACTIVITY)
    async def update_identity(self, request: IdentityUpdate) -> IdentityUpdateResult:
        values = {
            name: value
            for name, value in (("name", request.name), ("status", request.status))
            if value is not None
        }
        if not values:
            return IdentityUpdateResult(changed=False)
        async with tenant_session(self._sessions, request.tenant_id) as session:
            result = await session.execute(
                update(User).where(User.id == uuid.UUID(request.user_id)).values(**values)
            )
        if _rowcount(result) == 0:
            raise _refuse(USER_NOT_FOUND, "no such user in this tenant")
        return IdentityUpdateResult(changed=True)

    @activity.defn(name=CHANGE_ROLE_ACTIVITY)
    async def change_role(self, request: RoleChange) -> RoleChangeResult:
        if request.role not in TENANT_USER_ROLES:
            raise _refuse(INVALID_USER_REQUEST, f"unknown role {request.role!r}")
        tenant_id, user_id = uuid.UUID(request.tenant_id), uuid.UUID(request.user_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            admins = await _locked_admins(session, tenant_id)
            current = await session.scalar(
                select(Membership.role)
                .where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
                .with_for_update()
            )
            if current is None:
                raise _refuse(USER_NOT_FOUND, "no such user in this tenant")
            if request.keep_an_admin and request.role != ADMIN_ROLE:
                _check_keeps_an_admin(admins, user_id)
            if current != request.role:
                await session.execute(
                    update(Membership)
                    .where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
                    .values(role=request.role)
                )
            permissions = await role_permissions(session, request.role)
        return RoleChangeResult(changed=current != request.role, permissions=permissions)

    @activity.defn(name=REMOVE_MEMBERSHIP_ACTIVITY)
    async def remove_membership(self, ref: MembershipRef) -> MembershipRemovalResult:
        """Remove the membership (and with it the role's permissions) and clear the user's
        active tenant if it is this one, in one transaction: once the membership is gone,
        RLS no longer lets this tenant touch the user's row."""
        tenant_id, user_id = uuid.UUID(ref.tenant_id), uuid.UUID(ref.user_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            admins = await _locked_admins(session, tenant_id)
            _check_keeps_an_admin(admins, user_id)
            await session.execute(
                update(User)
                .where(User.id == user_id, User.active_tenant_id == tenant_id)
                .values(active_tenant_id=None)
            )
            result = await session.execute(
                delete(Membership).where(
                    Membership.tenant_id == tenant_id, Membership.user_id == user_id
                )
            )
        return MembershipRemovalResult(removed=_rowcount(result) > 0)

    @activity.defn(name=RESTORE_MEMBERSHIP_ACTIVITY)
    async def restore_membership(self, request: MembershipRestore) -> UndoResult:
        tenant_id, user_id = uuid.UUID(request.tenant_id), uuid.UUID(request.user_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            result = await session.execute(
                insert(Membership)
                .values(tenant_id=tenant_id, user_id=user_id, role=request.role)
                .on_conflict_do_nothing()
            )
            if request.active_here:
                # The membership above makes the row visible again in this scope.
                await session.execute(
                    update(User)
                    .where(User.id == user_id, User.active_tenant_id.is_(None))
                    .values(active_tenant_id=tenant_id)
                )
        return UndoResult(undone=_rowcount(result) > 0)

    @activity.defn(name=REVOKE_SESSIONS_ACTIVITY)
    async def revoke_user_sessions(self, request: SessionRevocation) -> SessionRevocationResult:
        revoked = await revoke_sessions(
            self._sessions, uuid.UUID(request.tenant_id), uuid.UUID(request.user_id)
        )
        log.info("sessions revoked", revoked=revoked)
        return SessionRevocationResult(revoked=revoked)

    # tenant_switch_workflow

    @activity.defn(name=VALIDATE_SWITCH_ACTIVITY)
    async def validate_switch(self, request: SwitchValidationInput) -> SwitchValidation:
        """Read in the target tenant's scope: a tenant the user is not in looks exactly like
        one that does not exist."""
        tenant_id, user_id = uuid.UUID(request.target_tenant_id), uuid.UUID(request.user_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            row = (
                await session.execute(
                    select(User, Membership.role, Tenant.status)
                    .join(Membership, Membership.user_id == User.id)
                    .join(Tenant, Tenant.id == Membership.tenant_id)
                    .where(User.id == user_id, Membership.tenant_id == tenant_id)
                )
            ).one_or_none()
            if row is None:
                raise _refuse(NOT_A_MEMBER, "no such tenant")
            user, role, status = row
            if status != TenantStatus.ACTIVE.value:
                raise _refuse(TENANT_INACTIVE, f"the tenant is {status}, not active")
            if user.status != "active":
                raise _refuse(ACCESS_DENIED, "the user is disabled")
            # Platform admins belong only to the platform tenant, which has no role table.
            allowed = role == PLATFORM_ADMIN_ROLE or TENANT_ACCESS in await role_permissions(
                session, role
            )
            if not allowed:
                raise _refuse(ACCESS_DENIED, f"the role {role} may not access this tenant")
            previous = user.active_tenant_id
        return SwitchValidation(role=role, previous_tenant_id=str(previous) if previous else None)

    @activity.defn(name=LOAD_TENANT_CONTEXT_ACTIVITY)
    async def load_tenant_context(self, request: TenantContextInput) -> TenantContext:
        cached = await self._cache.get(request.tenant_id)
        if cached is not None:
            try:
                return TenantContext(**{**cached, "source": "cache"})
            except TypeError:
                pass  # written by another version of this code: reload and overwrite
        context = await self._load_context(uuid.UUID(request.tenant_id))
        await self._cache.set(request.tenant_id, asdict(context))
        return context

    async def _load_context(self, tenant_id: uuid.UUID) -> TenantContext:
        self.context_loads += 1
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                raise _refuse(NOT_A_MEMBER, "no such tenant")
            rows = await session.execute(
                select(TenantRolePermission.role, TenantRolePermission.permission).order_by(
                    TenantRolePermission.role, TenantRolePermission.permission
                )
            )
            permissions: dict[str, list[str]] = {}
            for role, permission in rows:
                permissions.setdefault(role, []).append(permission)
            quota = await session.get(TenantQuota, tenant_id)
        return TenantContext(
            tenant_id=str(tenant_id),
            slug=tenant.slug,
            display_name=tenant.display_name,
            plan=tenant.plan,
            status=tenant.status,
            settings=dict(tenant.settings or {}),
            permissions=permissions,
            quotas={name: int(getattr(quota, name)) for name in QUOTA_FIELDS} if quota else {},
            features=list(quota.features) if quota else [],
            source="database",
        )

    @activity.defn(name=SET_ACTIVE_TENANT_ACTIVITY)
    async def set_active_tenant(self, request: ActiveTenantChange) -> ActiveTenantResult:
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            current = await session.scalar(
                select(User.active_tenant_id)
                .where(User.id == uuid.UUID(request.user_id))
                .with_for_update()
            )
            result = await session.execute(
                update(User)
                .where(User.id == uuid.UUID(request.user_id))
                .values(active_tenant_id=tenant_id)
            )
        if _rowcount(result) == 0:  # removed from the tenant since the validation
            raise _refuse(NOT_A_MEMBER, "no such tenant")
        return ActiveTenantResult(changed=current != tenant_id)

    @activity.defn(name=RESTORE_ACTIVE_TENANT_ACTIVITY)
    async def restore_active_tenant(self, request: ActiveTenantRestore) -> UndoResult:
        previous = uuid.UUID(request.previous_tenant_id) if request.previous_tenant_id else None
        switched_to = uuid.UUID(request.switched_to)
        if previous == switched_to:
            return UndoResult(undone=False)
        async with tenant_session(self._sessions, switched_to) as session:
            result = await session.execute(
                update(User)
                .where(User.id == uuid.UUID(request.user_id), User.active_tenant_id == switched_to)
                .values(active_tenant_id=previous)
            )
        return UndoResult(undone=_rowcount(result) > 0)

    @activity.defn(name=ISSUE_SESSION_TOKEN_ACTIVITY)
    async def issue_session_token(self, request: SessionTokenInput) -> SessionToken:
        try:
            issued = await issue_session_token(
                self._sessions,
                self._settings,
                session_id=uuid.UUID(request.session_id),
                user_id=uuid.UUID(request.user_id),
                tenant_id=uuid.UUID(request.tenant_id),
                role=Role(request.role),
                email=request.email,
            )
        except SessionUnavailableError as err:
            raise _refuse(INVALID_USER_REQUEST, str(err)) from None
        return SessionToken(
            session_id=str(issued.session_id), token=issued.token, expires_at=issued.expires_at
        )

    @activity.defn(name=DELETE_SESSION_ACTIVITY)
    async def delete_session(self, ref: SessionRef) -> UndoResult:
        """Revoke, not delete: if the token escaped somehow, the revoked row still refuses
        it, and it cannot be re-created by a late retry of the issuing step."""
        async with tenant_session(self._sessions, ref.tenant_id) as session:
            result = await session.execute(
                update(AuthSession)
                .where(
                    AuthSession.id == uuid.UUID(ref.session_id), AuthSession.revoked_at.is_(None)
                )
                .values(revoked_at=func.now())
            )
        return UndoResult(undone=_rowcount(result) > 0)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.validate_onboarding,
            self.create_identity,
            self.delete_identity,
            self.create_membership,
            self.delete_membership,
            self.create_invitation,
            self.delete_invitation,
            self.load_user_for_update,
            self.update_identity,
            self.change_role,
            self.remove_membership,
            self.restore_membership,
            self.revoke_user_sessions,
            self.validate_switch,
            self.load_tenant_context,
            self.set_active_tenant,
            self.restore_active_tenant,
            self.issue_session_token,
            self.delete_session,
        ]
