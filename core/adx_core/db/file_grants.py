"""Which grants on files a user holds: the one rule the API's reads, its listing and the
sharing workflow's check all apply."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, and_, func, or_, select

from adx_core.contracts.files import PrincipalKind
from adx_core.db.models import FilePermission, GroupMember


def held_by(user_id: uuid.UUID) -> ColumnElement[bool]:
    """A ``file_permissions`` row that is live (not expired) and names the user, directly
    or through a group they are in."""
    groups = select(GroupMember.group_id).where(GroupMember.user_id == user_id)
    return and_(
        or_(FilePermission.expires_at.is_(None), FilePermission.expires_at > func.now()),
        or_(
            and_(
                FilePermission.principal_kind == PrincipalKind.USER.value,
                FilePermission.principal_id == user_id,
            ),
            and_(
                FilePermission.principal_kind == PrincipalKind.GROUP.value,
                FilePermission.principal_id.in_(groups),
            ),
        ),
    )
