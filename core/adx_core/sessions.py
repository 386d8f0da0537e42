"""Sessions behind tokens: issuing a token bound to a session row, and checking that the
session is still live.

A token is self-contained, so revoking one needs a record the API consults on every
request: the ``auth_sessions`` row named by the token's ``sid`` claim. Tokens without a
``sid`` (development tokens from ``adx token``) cannot be revoked this way; they expire.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from adx_core.auth import Role, mint_token
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import AuthSession
from adx_core.settings import Settings


class SessionUnavailableError(Exception):
    """The session id is taken by another user's or a revoked session."""


@dataclass(frozen=True)
class IssuedToken:
    session_id: uuid.UUID
    token: str
    expires_at: datetime


async def issue_session_token(
    sessions: Sessions,
    settings: Settings,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    role: Role,
    email: str | None = None,
) -> IssuedToken:
    """Create the session (once: a retry finds its own row and keeps its expiry) and mint a
    token for it that expires with it."""
    async with tenant_session(sessions, tenant_id) as session:
        await session.execute(
            insert(AuthSession)
            .values(
                id=session_id,
                user_id=user_id,
                tenant_id=tenant_id,
                expires_at=func.now() + timedelta(seconds=settings.token_ttl_seconds),
            )
            .on_conflict_do_nothing(index_elements=[AuthSession.id])
        )
        row = (
            await session.execute(
                select(AuthSession.expires_at, AuthSession.revoked_at, AuthSession.user_id).where(
                    AuthSession.id == session_id
                )
            )
        ).one_or_none()
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        raise SessionUnavailableError("the session id belongs to another or a revoked session")
    ttl = max(1, int((row.expires_at - datetime.now(UTC)).total_seconds()))
    token = mint_token(
        settings,
        user_id=str(user_id),
        tenant_id=str(tenant_id),
        roles=[role],
        email=email,
        ttl_seconds=ttl,
        session_id=str(session_id),
    )
    return IssuedToken(session_id=session_id, token=token, expires_at=row.expires_at)


async def session_is_active(
    sessions: Sessions, tenant_id: str | uuid.UUID, session_id: str | uuid.UUID
) -> bool:
    """Whether the session exists in ``tenant_id``, is not revoked and has not expired.

    Read in the token's own tenant scope, so a ``sid`` from another tenant is simply not
    found (and so not active)."""
    try:
        sid = session_id if isinstance(session_id, uuid.UUID) else uuid.UUID(session_id)
    except ValueError:
        return False
    async with tenant_session(sessions, tenant_id) as session:
        found = await session.scalar(
            select(AuthSession.id).where(
                AuthSession.id == sid,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > func.now(),
            )
        )
    return found is not None


async def revoke_sessions(sessions: Sessions, tenant_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """Revoke every live session of the user in the tenant; revoking twice changes nothing."""
    async with tenant_session(sessions, tenant_id) as session:
        result = await session.execute(
            update(AuthSession)
            .where(
                AuthSession.tenant_id == tenant_id,
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
