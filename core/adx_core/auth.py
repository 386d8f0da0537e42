"""Bearer tokens: the claims ADX understands, and how they are minted and checked.

Claims: ``sub`` (user id), ``tenant_id``, ``roles``, plus ``iss``, ``aud``, ``iat`` and
``exp``; optionally ``sid``, the session a tenant switch issued the token for (revoking the
session ends the token). Tokens ADX mints are HS256-signed with ``ADX_JWT_SECRET``.

``TokenVerifier`` also accepts an identity provider's tokens: signed with an asymmetric key
from its JWKS (``adx_core.jwks``), issued by ``ADX_JWT_EXTERNAL_ISSUER`` (or
``ADX_JWT_ISSUER``), for the same audience and with the same claims.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

import jwt

from adx_core.jwks import (
    ASYMMETRIC_ALGORITHMS,
    HttpFetch,
    JwksFileSource,
    JwksUrlSource,
    KeySource,
    KeysUnavailableError,
    SigningKey,
)
from adx_core.settings import Settings

ALGORITHM = "HS256"


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    TENANT_ADMIN = "tenant-admin"
    MEMBER = "member"
    VIEWER = "viewer"


class AuthError(Exception):
    """Why a token was refused. ``kind`` is stable; the message is safe to show.

    ``keys_unavailable`` is not a verdict on the token: the identity provider's keys could
    not be obtained, and ``retry_after`` says when to try again (the API answers 503)."""

    def __init__(self, kind: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


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
    """Check a token ADX minted (HS256 under ADX_JWT_SECRET). The API uses TokenVerifier,
    which also accepts identity-provider tokens."""
    payload = _decode(
        token, _secret(settings), ALGORITHM, settings=settings, issuer=settings.jwt_issuer
    )
    return _claims(payload, own=True)


def _decode(
    token: str, key: Any, algorithm: str, *, settings: Settings, issuer: str
) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.jwt_audience,
            issuer=issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("expired", "the token has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("bad_signature", "the token signature is not valid") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid", f"the token is not valid: {exc}") from exc
    return payload


class TokenVerifier:
    """Checks bearer tokens for the API: ADX's own HS256 tokens exactly as ``verify_token``
    does, and identity-provider tokens against the configured key sources. Create one per
    process (it caches the provider's keys) and close it at shutdown."""

    def __init__(self, settings: Settings, sources: Sequence[KeySource] | None = None) -> None:
        self._settings = settings
        self._sources = list(sources) if sources is not None else key_sources(settings)

    async def __aenter__(self) -> TokenVerifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for source in self._sources:
            await source.close()

    async def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid", f"the token is not valid: {exc}") from exc
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm == ALGORITHM:
            # Algorithm confusion: an HMAC token naming a provider key was made by someone
            # who took that (public) key for a shared secret. Never a token of ours.
            if isinstance(kid, str) and any(source.known(kid) for source in self._sources):
                raise AuthError("invalid", "an HS256 token cannot name an identity-provider key")
            return verify_token(self._settings, token)
        if algorithm not in ASYMMETRIC_ALGORITHMS or not self._sources:
            # "none", other HMACs, and anything when no identity provider is configured.
            raise AuthError("invalid", "the token is not valid: its algorithm is not allowed")
        if not isinstance(kid, str) or not kid:
            raise AuthError("invalid", "the token does not name its signing key (kid)")
        key = await self._find(kid)
        if key is None:
            raise AuthError("bad_signature", "the token is signed with an unknown key")
        if algorithm not in key.algorithms:
            raise AuthError("invalid", "the token's algorithm does not match its key")
        issuer = self._settings.jwt_external_issuer or self._settings.jwt_issuer
        payload = _decode(token, key.jwk.key, algorithm, settings=self._settings, issuer=issuer)
        return _claims(payload, own=False)

    async def _find(self, kid: str) -> SigningKey | None:
        unavailable: KeysUnavailableError | None = None
        for source in self._sources:
            try:
                key = await source.find(kid)
            except KeysUnavailableError as err:
                unavailable = err
                continue
            if key is not None:
                return key
        if unavailable is not None:
            raise AuthError(
                "keys_unavailable", unavailable.message, retry_after=unavailable.retry_after
            )
        return None


def key_sources(settings: Settings) -> list[KeySource]:
    """The identity provider's key sources the settings name: the file, then the URL."""
    sources: list[KeySource] = []
    if settings.jwt_keys_file is not None:
        sources.append(JwksFileSource(settings.jwt_keys_file))
    if settings.jwt_jwks_url:
        fetch = HttpFetch(settings.jwt_jwks_url)
        sources.append(
            JwksUrlSource(fetch, cache_seconds=settings.jwt_jwks_cache_seconds, close=fetch.close)
        )
    return sources


def _claims(payload: dict[str, Any], *, own: bool) -> Claims:
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
    # ``sid`` names one of our sessions only in tokens we minted; a provider's ``sid`` is its
    # own session id (OpenID Connect), which ADX does not track.
    sid = payload.get("sid") if own else None
    if sid is not None and (not isinstance(sid, str) or not _is_uuid(sid)):
        raise AuthError("invalid", "the token has an invalid sid claim")
    return Claims(sub, tenant_id, parsed, email if isinstance(email, str) else None, sid)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
