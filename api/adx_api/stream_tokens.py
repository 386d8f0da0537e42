"""Stream tokens: a browser's ``EventSource`` cannot send an Authorization header, so it
gets a short-lived token that opens one operation's event stream and nothing else.

The token is a JWT signed with ADX_JWT_SECRET, but with its own audience: the bearer
check of every other route refuses it, and the events route refuses it for any other
operation. It carries the caller's tenant, user and roles, so the stream is checked
exactly as the bearer request that asked for it was.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import jwt

from adx_core.auth import ALGORITHM, AuthError, Claims, Role
from adx_core.settings import Settings

AUDIENCE = "adx-operation-events"


def mint_stream_token(
    settings: Settings, claims: Claims, operation_id: str
) -> tuple[str, datetime]:
    """A token for ``operation_id``'s events and when it expires."""
    if settings.jwt_secret is None:
        raise AuthError("not_configured", "token signing is not configured (ADX_JWT_SECRET)")
    now = int(time.time())
    expires = now + settings.stream_token_ttl_seconds
    payload: dict[str, object] = {
        "iss": settings.jwt_issuer,
        "aud": AUDIENCE,
        "sub": claims.user_id,
        "tenant_id": claims.tenant_id,
        "roles": [role.value for role in claims.roles],
        "op": operation_id,
        "iat": now,
        "exp": expires,
        "jti": uuid.uuid4().hex,
    }
    if claims.session_id:
        payload["sid"] = claims.session_id
    token = jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)
    return token, datetime.fromtimestamp(expires, UTC)


def verify_stream_token(settings: Settings, token: str, operation_id: str) -> Claims:
    """The claims of a stream token, if it is valid and was issued for ``operation_id``."""
    if settings.jwt_secret is None:
        raise AuthError("not_configured", "token signing is not configured (ADX_JWT_SECRET)")
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "op"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("expired", "the stream token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid", "the stream token is not valid") from exc
    if payload.get("op") != operation_id:
        raise AuthError("wrong_operation", "the stream token is for another operation")
    tenant_id, roles, sid = payload.get("tenant_id"), payload.get("roles"), payload.get("sid")
    if not isinstance(tenant_id, str) or not isinstance(roles, list):
        raise AuthError("invalid", "the stream token is not valid")
    try:
        parsed = tuple(Role(role) for role in roles)
    except ValueError as exc:
        raise AuthError("invalid", "the stream token is not valid") from exc
    return Claims(
        user_id=str(payload["sub"]),
        tenant_id=tenant_id,
        roles=parsed,
        session_id=sid if isinstance(sid, str) else None,
    )
