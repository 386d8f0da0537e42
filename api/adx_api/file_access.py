"""Who may do what with a file. Every file route asks here, in the caller's tenant scope.

Two checks, both needed: the caller's tenant role must carry the permission (the tenant's
``tenant_role_permissions``: files.read, files.write, files.share), and the caller must hold
a grant on the file itself: as its owner, or through a share to them or to a group they are
in, not expired. Tenant admins reach every file of their tenant. A file the caller may not
see is a 404, never a 403, so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from enum import IntEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adx_api.problems import ProblemError
from adx_core.auth import Claims, Role
from adx_core.contracts.files import FileStatus
from adx_core.db.file_grants import held_by
from adx_core.db.models import File, FilePermission, TenantRolePermission


class Access(IntEnum):
    VIEW = 1
    EDIT = 2
    OWN = 3


_GRANT_ACCESS = {"viewer": Access.VIEW, "editor": Access.EDIT, "owner": Access.OWN}


def caller_id(claims: Claims) -> uuid.UUID:
    try:
        return uuid.UUID(claims.user_id)
    except ValueError:
        raise ProblemError(403, "forbidden", "this token names no user identity") from None


async def require_permission(session: AsyncSession, claims: Claims, permission: str) -> None:
    """The caller's tenant role must carry ``permission`` (tenants may narrow their roles)."""
    roles = [role.value for role in claims.roles]
    granted = await session.scalar(
        select(TenantRolePermission.permission).where(
            TenantRolePermission.role.in_(roles), TenantRolePermission.permission == permission
        )
    )
    if granted is None:
        raise ProblemError(403, "forbidden", f"your role does not allow {permission}")


def is_tenant_admin(claims: Claims) -> bool:
    return claims.has_any(Role.TENANT_ADMIN)


async def access_to(session: AsyncSession, file_id: uuid.UUID, user_id: uuid.UUID) -> Access | None:
    """The best grant the user holds on the file, directly or through a group."""
    roles = await session.scalars(
        select(FilePermission.role).where(FilePermission.file_id == file_id, held_by(user_id))
    )
    found = [_GRANT_ACCESS[role] for role in roles.all() if role in _GRANT_ACCESS]
    return max(found) if found else None


async def require_file(
    session: AsyncSession,
    claims: Claims,
    file_id: uuid.UUID,
    need: Access,
    *,
    ready: bool = True,
) -> File:
    """The file, if the caller may ``need`` it; ``ready`` also demands a scanned, promoted
    file (content, thumbnails, shares). Rejected and quarantined bytes are never served."""
    file = await session.get(File, file_id)
    if file is None or file.status == FileStatus.DELETED.value:
        raise ProblemError(404, "not-found", "no such file")
    if not is_tenant_admin(claims):
        user_id = caller_id(claims)
        # The uploader owns the file from the first byte; the owner's grant row is written
        # when the file becomes ready, so a rejected upload is still its uploader's to see.
        held = (
            Access.OWN if file.created_by == user_id else await access_to(session, file_id, user_id)
        )
        if held is None:
            raise ProblemError(404, "not-found", "no such file")
        if held < need:
            raise ProblemError(403, "forbidden", "your grant on this file does not allow this")
    if ready and file.status != FileStatus.READY.value:
        raise ProblemError(
            409, "file-not-ready", f"the file is {file.status}", file_status=file.status
        )
    return file
