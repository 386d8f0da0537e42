"""Request body size limits, per route, in one table.

Every route not in ``ROUTE_BODY_LIMITS`` takes ``ADX_MAX_BODY_BYTES`` (JSON bodies). The
middleware refuses a declared ``Content-Length`` above the route's limit with a 413 before
any handler runs, and gives the handler a request whose ``read()`` stops at that limit, so a
chunked body without a length is bounded too.

Streamed routes are left alone: they write the body to storage as it arrives and meter it
against the tenant's plan themselves (``adx_api.uploading``), so a limit here would only
limit them twice, and wrongly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Literal

from aiohttp import web

from adx_api.keys import SETTINGS
from adx_api.problems import ProblemError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STREAMED: Final = "streamed"
BodyLimit = int | Literal["streamed"]

# The codec server takes batches of Temporal payloads: the UI sends what one page of a
# workflow's history holds, and Temporal's own gRPC messages may be 4 MiB. As protobuf JSON
# the payloads are base64, a third larger, so 8 MiB leaves room for a full page.
CODEC_BODY_BYTES = 8 * 1024 * 1024

# (method, route path as registered) -> the largest body the route accepts.
ROUTE_BODY_LIMITS: Mapping[tuple[str, str], BodyLimit] = {
    ("POST", "/v1/files"): STREAMED,
    ("POST", "/v1/uploads"): STREAMED,
    ("PATCH", "/v1/uploads/{id}"): STREAMED,
    ("POST", "/codec/decode"): CODEC_BODY_BYTES,
    ("POST", "/codec/encode"): CODEC_BODY_BYTES,
}


def route_body_limit(request: web.Request) -> BodyLimit:
    """The body limit of the route ``request`` matched (the default for unknown paths)."""
    resource = request.match_info.route.resource
    if resource is not None:
        limit = ROUTE_BODY_LIMITS.get((request.method, resource.canonical))
        if limit is not None:
            return limit
    return request.app[SETTINGS].max_body_bytes


def too_large(limit: int) -> ProblemError:
    return ProblemError(413, "payload-too-large", f"the body may be at most {limit} bytes")


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse bodies over the route's limit before a handler reads a byte of them."""
    limit = route_body_limit(request)
    if limit == STREAMED:
        return await handler(request)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    if limit != request.client_max_size:
        # ``read()`` stops at ``client_max_size`` (413): give the handler the route's bound.
        request = request.clone(client_max_size=limit)
    return await handler(request)
