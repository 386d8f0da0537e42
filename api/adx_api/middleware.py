"""Request middlewares, outermost first: context, problems, authentication."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from opentelemetry import propagate, trace
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from temporalio.service import RPCError

from adx_api.keys import CLAIMS, CONTEXT, SESSIONS, TOKEN_VERIFIER
from adx_api.problems import ProblemError, from_http_exception, invalid_token, problem_response
from adx_api.routes.codec import CODEC_PATHS, cors_headers
from adx_core import context
from adx_core.auth import AuthError
from adx_core.logging import get_logger
from adx_core.metrics import HTTP_LATENCY, HTTP_REQUESTS
from adx_core.sessions import session_is_active

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = get_logger("adx_api.access")
_tracer = trace.get_tracer("adx_api")

# Paths that answer without a token: probes, metrics and the API description.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
# Path prefixes that answer without a bearer token: a shared link (/s/<token>) carries its
# own credential and its route checks it.
PUBLIC_PREFIXES = ("/s/",)
# Paths whose routes handle a missing token themselves (a given token is still checked).
OPTIONAL_AUTH_PATHS = CODEC_PATHS


def _carries_stream_token(request: web.Request) -> bool:
    """An EventSource cannot send Authorization: the events route checks the stream token
    it carries in its query instead (adx_api.routes.operations.stream_claims)."""
    return (
        request.method == "GET"
        and request.path.startswith("/v1/operations/")
        and request.path.endswith("/events")
        and "access_token" in request.query
    )


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request a correlation id, log it once, and count it."""
    correlation_id = context.correlation_id_from(
        request.headers.get("X-Request-ID"), request.headers.get("traceparent")
    )
    ctx = context.AuthContext(correlation_id=correlation_id)
    request[CONTEXT] = ctx
    started = time.perf_counter()
    status = 500
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    # Continue the caller's trace (W3C traceparent); workflow spans become its children.
    parent = propagate.extract(request.headers)
    try:
        with (
            context.use(ctx),
            _tracer.start_as_current_span(
                f"{request.method} {_route_label(request)}",
                context=parent,
                kind=trace.SpanKind.SERVER,
                attributes={
                    "http.request.method": request.method,
                    "adx.correlation_id": correlation_id,
                },
            ) as span,
        ):
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
        status = response.status
        if not response.prepared:  # a stream's headers are already out
            response.headers["X-Request-ID"] = correlation_id
            if request.path in CODEC_PATHS:
                cors_headers(request, response)
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        HTTP_REQUESTS.labels("api", route, request.method, str(status)).inc()
        HTTP_LATENCY.labels("api", route, request.method).observe(elapsed)
        if request.path not in PUBLIC_PATHS:
            log.info(
                "request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
        structlog.contextvars.unbind_contextvars("correlation_id")


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as application/problem+json, and never leak internals."""
    try:
        return await handler(request)
    except ProblemError as problem:
        return problem_response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(from_http_exception(exc), request)
    # Errors name the route, never the raw path: a path can carry a secret (a link token).
    except RPCError as err:
        # Temporal is down or overloaded: a retryable condition, not a bug of ours.
        log.warning("temporal unavailable", route=_route_label(request), rpc_status=err.status.name)
        return problem_response(_unavailable("Temporal"), request)
    except (OperationalError, InterfaceError, PoolTimeoutError, OSError) as err:
        log.warning("database unavailable", route=_route_label(request), error=type(err).__name__)
        return problem_response(_unavailable("the database"), request)
    except Exception:
        log.exception("unhandled error", route=_route_label(request))
        return problem_response(ProblemError(500, "internal"), request)


def _unavailable(what: str) -> ProblemError:
    return ProblemError(
        503, "unavailable", f"{what} is not reachable; try again", headers={"Retry-After": "5"}
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a valid bearer token on everything but the public paths."""
    if (
        request.path in PUBLIC_PATHS
        or request.path.startswith(PUBLIC_PREFIXES)
        or request.method == "OPTIONS"
    ):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="adx"'}
    if not header and (request.path in OPTIONAL_AUTH_PATHS or _carries_stream_token(request)):
        return await handler(request)  # the route decides what an anonymous caller may do
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthenticated", "a bearer token is required", headers=challenge)
    try:
        claims = await request.app[TOKEN_VERIFIER].verify(token.strip())
    except AuthError as err:
        if err.kind == "keys_unavailable":  # not the token's fault: the caller may retry
            raise ProblemError(
                503,
                "unavailable",
                err.message,
                headers={"Retry-After": str(err.retry_after or 5)},
                reason=err.kind,
            ) from None
        raise invalid_token(err.message, err.kind) from None
    # A session token (one with ``sid``) dies with its session: a user removed from the
    # tenant, demoted or disabled loses it at once, not when it expires.
    if claims.session_id is not None and not await session_is_active(
        request.app[SESSIONS], claims.tenant_id, claims.session_id
    ):
        raise invalid_token("the session has ended", "revoked")
    request[CLAIMS] = claims
    ctx = context.AuthContext(
        correlation_id=request[CONTEXT].correlation_id,
        user_id=claims.user_id,
        tenant_id=claims.tenant_id,
        roles=tuple(role.value for role in claims.roles),
    )
    request[CONTEXT] = ctx
    structlog.contextvars.bind_contextvars(tenant_id=claims.tenant_id, user_id=claims.user_id)
    try:
        with context.use(ctx):
            return await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("tenant_id", "user_id")
