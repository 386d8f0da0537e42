"""CORS for the frontends' origins (``ADX_CORS_ALLOWED_ORIGINS``; empty: no CORS).

Not aiohttp-cors: it adds an OPTIONS route to every resource and refuses a resource that has
one already, and two of ours do (the tus capability answer on /v1/uploads, the codec
server's preflight). So a preflight is answered here, before routing reaches a handler, and
every other response gets its headers from the ``on_response_prepare`` signal. The signal
runs when the headers go out, so it also reaches a stream (SSE, file content) that its
handler prepared before any middleware saw the response.

The origin is echoed, never ``*``: callers send Authorization. No
``Access-Control-Allow-Credentials``: the API uses no cookies, and a bearer token a script
sets itself needs none. The codec paths keep their own CORS, for the Temporal UI's origins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from adx_api.keys import SETTINGS
from adx_api.problems import ProblemError
from adx_api.routes.codec import CODEC_PATHS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Request headers a frontend may send beyond the CORS-safelisted ones.
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Prefer",
    "Last-Event-ID",
    "If-None-Match",
    "Range",
    "X-Request-ID",
    "traceparent",
    "tracestate",
    # tus 1.0 (resumable uploads)
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Defer-Length",
)
# Response headers a frontend's script may read (a browser hides all but a safelisted few).
EXPOSED_HEADERS = (
    "Location",
    "Preference-Applied",
    "Retry-After",
    "X-Request-ID",
    "ETag",
    "Content-Range",
    "Content-Disposition",
    "Idempotent-Replayed",
    "RateLimit",
    "RateLimit-Policy",
    "WWW-Authenticate",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
)
# How long a browser may reuse a preflight answer: short, so that an origin taken off the
# list loses access within minutes.
MAX_AGE_SECONDS = 600


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ORIGIN in request.headers
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin in request.app[SETTINGS].cors_allowed_origins:
        return origin
    return None


def _route_methods(request: web.Request) -> list[str] | None:
    """The methods the requested path answers, or ``None`` when no route has the path."""
    match_info = request.match_info
    error = match_info.http_exception
    if isinstance(error, web.HTTPMethodNotAllowed):
        methods = set(error.allowed_methods)  # an OPTIONS request for a path without one
    elif error is not None:
        return None
    else:
        resource = match_info.route.resource
        methods = {route.method for route in resource} if resource is not None else set()
    return sorted(methods | {hdrs.METH_OPTIONS})


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflights for every route; other requests pass through untouched."""
    if not _is_preflight(request) or request.path in CODEC_PATHS:
        # A plain OPTIONS (tus capability discovery) still reaches its route.
        return await handler(request)
    methods = _route_methods(request)
    if methods is None:
        return await handler(request)  # an unknown path: its 404
    if _allowed_origin(request) is None:
        raise ProblemError(
            403, "origin-not-allowed", "this origin may not call the API from a browser"
        )
    return web.Response(
        status=204,
        headers={
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(methods),
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(ALLOWED_HEADERS),
            hdrs.ACCESS_CONTROL_MAX_AGE: str(MAX_AGE_SECONDS),
        },
    )


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS headers on every response to an allowed origin."""
    if request.path in CODEC_PATHS or not request.app[SETTINGS].cors_allowed_origins:
        return
    # The answer depends on Origin whatever it is (even none), so caches must key on it.
    _vary_on_origin(response)
    origin = _allowed_origin(request)
    if origin is None:
        return
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    if hdrs.ACCESS_CONTROL_ALLOW_METHODS not in response.headers:  # not a preflight answer
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED_HEADERS)


def _vary_on_origin(response: web.StreamResponse) -> None:
    present = response.headers.get(hdrs.VARY)
    if present is None:
        response.headers[hdrs.VARY] = hdrs.ORIGIN
        return
    names = {name.strip().lower() for name in present.split(",")}
    if "origin" not in names and "*" not in names:
        response.headers[hdrs.VARY] = f"{present}, {hdrs.ORIGIN}"
