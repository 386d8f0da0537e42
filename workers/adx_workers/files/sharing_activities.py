"""The activities of file_sharing_workflow: validate, create and revoke a share.

Each runs in one transaction in the RLS scope of the file's tenant, so a user, a group or
a file of another tenant is simply not there: a cross-tenant share is refused because the
grantee cannot be found, never because of a check that could be forgotten. Each is
idempotent on the share id: a retry finds its own earlier work.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core import context
from adx_core.auth import Role
from adx_core.contracts.files import (
    CREATE_SHARE_ACTIVITY,
    FILE_NOT_FOUND,
    REVOKE_SHARE_ACTIVITY,
    SHARE_REFUSED,
    VALIDATE_SHARE_ACTIVITY,
    CreateShareResult,
    FileShareRequest,
    FileStatus,
    PrincipalKind,
    RevokeShareRequest,
    RevokeShareResult,
    ShareGrantee,
    ValidateShareResult,
)
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.file_grants import held_by
from adx_core.db.models import (
    AuditEntry,
    File,
    FilePermission,
    FileShare,
    Group,
    GroupMember,
    Membership,
    User,
)
from adx_core.logging import get_logger

log = get_logger(__name__)

# The grants on a file that allow sharing it.
_MAY_SHARE = ("owner", "editor")


def permission_id(share_id: str, grantee: ShareGrantee) -> uuid.UUID:
    """The id of a share's grant to one principal: derived, so that a retried create
    writes the same rows."""
    return uuid.uuid5(uuid.UUID(share_id), f"{grantee.kind.value}:{grantee.id}")


def _refuse(message: str) -> ApplicationError:
    return ApplicationError(message, type=SHARE_REFUSED, non_retryable=True)


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _refuse(f"{what} is not an id") from None


def _correlation_id() -> str | None:
    ctx = context.current()
    return ctx.correlation_id if ctx else None


async def _may_share(
    session: AsyncSession, tenant_id: uuid.UUID, file_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    """A tenant admin, or a live owner or editor grant on the file, directly or through a
    group (the rule adx_api.file_access applies to tokens, read here from the database)."""
    role = await session.scalar(
        select(Membership.role).where(
            Membership.tenant_id == tenant_id, Membership.user_id == user_id
        )
    )
    if role == Role.TENANT_ADMIN.value:
        return True
    held = await session.scalar(
        select(FilePermission.id)
        .where(
            FilePermission.file_id == file_id,
            FilePermission.role.in_(_MAY_SHARE),
            held_by(user_id),
        )
        .limit(1)
    )
    return held is not None


async def _grantee_emails(
    session: AsyncSession, tenant_id: uuid.UUID, grantees: list[ShareGrantee]
) -> list[str]:
    """The e-mail of every user grantee and of every member of a group grantee. Each must
    be of this tenant: RLS shows only this tenant's memberships and groups."""
    user_ids = [_uuid(g.id, "a grantee") for g in grantees if g.kind is PrincipalKind.USER]
    group_ids = [_uuid(g.id, "a grantee") for g in grantees if g.kind is PrincipalKind.GROUP]
    members = set(
        (
            await session.scalars(
                select(Membership.user_id).where(
                    Membership.tenant_id == tenant_id, Membership.user_id.in_(user_ids)
                )
            )
        ).all()
    )
    for user_id in user_ids:
        if user_id not in members:
            # The same answer whether the user exists elsewhere or not at all.
            raise _refuse(f"the user {user_id} is not a member of this tenant")
    groups = set(
        (
            await session.scalars(
                select(Group.id).where(Group.tenant_id == tenant_id, Group.id.in_(group_ids))
            )
        ).all()
    )
    for group_id in group_ids:
        if group_id not in groups:
            raise _refuse(f"the group {group_id} is not a group of this tenant")
    in_groups = select(GroupMember.user_id).where(GroupMember.group_id.in_(group_ids))
    emails = await session.scalars(
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.tenant_id == tenant_id,
            or_(User.id.in_(user_ids), User.id.in_(in_groups)),
            User.status == "active",
        )
    )
    return list(emails.all())


class SharingActivities:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def all(self) -> list[Any]:
        return [self.validate_share, self.create_share, self.revoke_share]

    @activity.defn(name=VALIDATE_SHARE_ACTIVITY)
    async def validate_share(self, request: FileShareRequest) -> ValidateShareResult:
        """The file is ready, the sharer may share it, every grantee is of the file's
        tenant; and who is to be told."""
        tenant_id = _uuid(request.tenant_id, "the tenant")
        file_id = _uuid(request.file_id, "the file")
        sharer_id = _uuid(request.sharer_id, "the sharer")
        async with tenant_session(self._sessions, request.tenant_id) as session:
            file = await session.get(File, file_id)
            if file is None:
                raise ApplicationError("no such file", type=FILE_NOT_FOUND, non_retryable=True)
            if file.status != FileStatus.READY.value:
                raise _refuse(f"the file is {file.status}; only a ready file can be shared")
            sharer = await session.get(User, sharer_id)  # RLS: members of this tenant only
            if sharer is None or not await _may_share(session, tenant_id, file_id, sharer_id):
                raise _refuse("the sharer may not share this file")
            if request.link:
                emails = [email.lower() for email in request.notify_emails]
            else:
                emails = await _grantee_emails(session, tenant_id, request.grantees)
        # The sharer is not told about their own share.
        recipients = sorted(set(emails) - {sharer.email.lower()})
        log.info("share validated", share_id=request.share_id, recipients=len(recipients))
        return ValidateShareResult(
            file_name=file.name, recipients=recipients, sharer_name=sharer.name
        )

    @activity.defn(name=CREATE_SHARE_ACTIVITY)
    async def create_share(self, request: FileShareRequest) -> CreateShareResult:
        """The share row and one grant per grantee, in one transaction, with an audit entry.
        A retry (or a concurrent attempt) finds the row and writes nothing."""
        share_id = _uuid(request.share_id, "the share")
        try:
            async with tenant_session(self._sessions, request.tenant_id) as session:
                created = await self._insert_share(session, share_id, request)
                grants = await session.scalar(
                    select(func.count())
                    .select_from(FilePermission)
                    .where(FilePermission.share_id == share_id)
                )
        except IntegrityError:
            # The file vanished since validation (the foreign key), or a token hash is
            # taken. ``from None``: the driver's error carries the SQL parameters.
            raise ApplicationError(
                "the file is gone or the link token is taken",
                type=FILE_NOT_FOUND,
                non_retryable=True,
            ) from None
        log.info("share created", share_id=request.share_id, created=created, grants=grants)
        return CreateShareResult(created=created, grants=int(grants or 0))

    async def _insert_share(
        self, session: AsyncSession, share_id: uuid.UUID, request: FileShareRequest
    ) -> bool:
        tenant_id = uuid.UUID(request.tenant_id)
        file_id = uuid.UUID(request.file_id)
        inserted = await session.execute(
            insert(FileShare)
            .values(
                id=share_id,
                tenant_id=tenant_id,
                file_id=file_id,
                kind="link" if request.link else "grant",
                role=request.role.value,
                token_hash=request.token_hash,
                password_hash=request.password_hash,
                expires_at=request.expires_at,
                created_by=uuid.UUID(request.sharer_id),
                grantees=[{"kind": g.kind.value, "id": g.id} for g in request.grantees],
            )
            .on_conflict_do_nothing(index_elements=[FileShare.id])
        )
        if not inserted.rowcount:  # type: ignore[attr-defined]
            return False
        if request.grantees:
            await session.execute(
                insert(FilePermission)
                .values(
                    [
                        {
                            "id": permission_id(request.share_id, grantee),
                            "tenant_id": tenant_id,
                            "file_id": file_id,
                            "principal_kind": grantee.kind.value,
                            "principal_id": uuid.UUID(grantee.id),
                            "role": request.role.value,
                            "share_id": share_id,
                            "expires_at": request.expires_at,
                        }
                        for grantee in request.grantees
                    ]
                )
                .on_conflict_do_nothing(index_elements=[FilePermission.id])
            )
        session.add(
            AuditEntry(
                tenant_id=tenant_id,
                actor_id=request.sharer_id,
                action="file.shared",
                subject=request.file_id,
                correlation_id=_correlation_id(),
                # Ids and the shape of the share; never a hash, a token or an address.
                details={
                    "share_id": request.share_id,
                    "kind": "link" if request.link else "grant",
                    "role": request.role.value,
                    "grantees": [{"kind": g.kind.value, "id": g.id} for g in request.grantees],
                    "expires_at": request.expires_at.isoformat() if request.expires_at else None,
                    "password_protected": request.password_hash is not None,
                },
            )
        )
        return True

    @activity.defn(name=REVOKE_SHARE_ACTIVITY)
    async def revoke_share(self, request: RevokeShareRequest) -> RevokeShareResult:
        """Mark the share revoked and delete its grants: access ends with this commit.
        Revoking a revoked or missing share changes nothing."""
        share_id = _uuid(request.share_id, "the share")
        async with tenant_session(self._sessions, request.tenant_id) as session:
            share = await session.get(FileShare, share_id, with_for_update=True)
            if share is None:
                return RevokeShareResult(revoked=False)
            revoked = share.revoked_at is None
            if revoked:
                share.revoked_at = datetime.now(UTC)
                session.add(
                    AuditEntry(
                        tenant_id=share.tenant_id,
                        actor_id=None,
                        action="file.share_revoked",
                        subject=str(share.file_id),
                        correlation_id=_correlation_id(),
                        details={"share_id": request.share_id, "by": "file_sharing_workflow"},
                    )
                )
            await session.execute(delete(FilePermission).where(FilePermission.share_id == share_id))
        log.info("share revoked", share_id=request.share_id, revoked=revoked)
        return RevokeShareResult(revoked=revoked)
