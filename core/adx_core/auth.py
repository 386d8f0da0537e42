"""Bearer tokens: the claims ADX understands, and how they are minted and checked.

Claims: ``sub`` (user id), ``tenant_id``, ``roles``, plus ``iss``, ``aud``, ``iat`` and
``exp``; optionally ``sid``, the session a tenant switch issued the token for (revoking the
session ends the token). Tokens are HS256-signed with ``ADX_JWT_SECRET``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import jwt

from adx_core.settings import Settings

ALGORITHM = "HS256"


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    TENANT_ADMIN = "tenant-admin"
    MEMBER = "member"
    VIEWER = "viewer"


class AuthError(Exception):
    """Why a token was refused. ``kind`` is stable; the message is safe to show."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Claims:
    user_id: str
    tenant_id: str
    roles: tuple[Role, ...]
    email: str | None = None
    session_id: str | None = None

    def has_any(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)


def _secret(settings: Settings) -> str:
    if settings.jwt_secret is None:
        raise AuthError("not_configured", "token signing is not configured (ADX_JWT_SECRET)")
    return settings.jwt_secret.get_secret_value()


def mint_token(
    settings: Settings,
    *,
    user_id: str,
    tenant_id: str,
    roles: tuple[Role, ...] | list[Role],
    email: str | None = None,
    ttl_seconds: int | None = None,
    session_id: str | None = None,
) -> str:
    now = int(time.time())
    payload: dict[str, object] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": user_id,
        "tenant_id": tenant_id,
        "roles": [Role(role).value for role in roles],
        "iat": now,
        "exp": now + (ttl_seconds if ttl_seconds is not None else settings.token_ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    if email:
        payload["email"] = email
    if session_id:
        payload["sid"] = session_id
    return jwt.encode(payload, _secret(settings), algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> Claims:
    try:
        payload = jwt.decode(
            token,
            _secret(settings),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("expired", "the token has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("bad_signature", "the token signature is not valid") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid", f"the token is not valid: {exc}") from exc
    return _claims(payload)


def _claims(payload: dict[str, object]) -> Claims:
    sub, tenant_id, roles = payload.get("sub"), payload.get("tenant_id"), payload.get("roles")
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid", "the token has no subject")
    if not isinstance(tenant_id, str) or not _is_uuid(tenant_id):
        raise AuthError("invalid", "the token has no valid tenant_id claim")
    if not isinstance(roles, list) or not roles:
        raise AuthError("invalid", "the token has no roles claim")
    try:
        parsed = tuple(Role(role) for role in roles)
    except ValueError as exc:
        raise AuthError("invalid", "the token names an unknown role") from exc
    email = payload.get("email")
    sid = payload.get("sid")
    if sid is not None and (not isinstance(sid, str) or not _is_uuid(sid)):
        raise AuthError("invalid", "the token has an invalid sid claim")
    return Claims(sub, tenant_id, parsed, email if isinstance(email, str) else None, sid)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
