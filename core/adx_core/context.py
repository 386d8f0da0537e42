"""The caller's identity and the correlation id, carried through one request or task.

The API sets it from the JWT and the ``X-Request-ID``/``traceparent`` headers; the Temporal
interceptor carries it in headers into every workflow and activity, where it is set again.
Contextvars make it follow asyncio tasks without being passed through every call.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

# Request ids come from clients; keep only what is safe to log and to put in a header.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class AuthContext:
    """Who asked for the work. Empty user and tenant mean a system actor (e.g. the operator)."""

    correlation_id: str
    user_id: str | None = None
    tenant_id: str | None = None
    roles: tuple[str, ...] = field(default_factory=tuple)

    def with_tenant(self, tenant_id: str) -> AuthContext:
        return replace(self, tenant_id=tenant_id)

    def to_header(self) -> dict[str, object]:
        return {
            "correlation_id": self.correlation_id,
            "user_id": self.user_id,
            "tenant_id": self.tenant_id,
            "roles": list(self.roles),
        }

    @classmethod
    def from_header(cls, data: object) -> AuthContext | None:
        if not isinstance(data, dict):
            return None
        correlation_id = data.get("correlation_id")
        if not isinstance(correlation_id, str) or not correlation_id:
            return None
        roles = data.get("roles") or []
        user_id = data.get("user_id")
        tenant_id = data.get("tenant_id")
        return cls(
            correlation_id=correlation_id,
            user_id=user_id if isinstance(user_id, str) else None,
            tenant_id=tenant_id if isinstance(tenant_id, str) else None,
            roles=tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else (),
        )


_current: ContextVar[AuthContext | None] = ContextVar("adx_auth_context", default=None)


def current() -> AuthContext | None:
    return _current.get()


def bind(ctx: AuthContext | None) -> None:
    """Set the context for the rest of the current task (a workflow run, say)."""
    _current.set(ctx)


@contextlib.contextmanager
def use(ctx: AuthContext | None) -> Iterator[None]:
    token = _current.set(ctx)
    try:
        yield
    finally:
        _current.reset(token)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def correlation_id_from(request_id: str | None, traceparent: str | None) -> str:
    """Pick the caller's id if it is well formed: X-Request-ID first, then the trace id."""
    if request_id and _REQUEST_ID.match(request_id):
        return request_id
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return new_correlation_id()
