"""The codec server: lets the Temporal UI show decrypted payloads to authorised users.

It speaks the Temporal codec server protocol (``POST /codec/decode`` and
``/codec/encode`` with ``{"payloads": [...]}`` in protobuf JSON). Only platform admins may
use it. In development, and only from loopback, it also answers without a token, because
the dev server's UI has no login to take a token from.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from adx_api.keys import CLAIMS, SETTINGS
from adx_api.problems import ProblemError
from adx_api.routes.common import require_permission
from adx_core.contracts.permissions import CODEC_USE
from adx_core.settings import Environment
from adx_core.temporal.client import data_converter
from adx_core.temporal.codec import UnknownKeyError

CODEC_PATHS = frozenset({"/codec/decode", "/codec/encode"})
_LOOPBACK = frozenset({"127.0.0.1", "::1"})
_MAX_PAYLOADS = 1000


def _codec(request: web.Request) -> PayloadCodec:
    codec = data_converter(request.app[SETTINGS]).payload_codec
    if codec is None:
        raise ProblemError(404, "not-found", "payload encryption is not configured")
    return codec


def _authorise(request: web.Request) -> None:
    claims = request.get(CLAIMS)
    if claims is not None:
        require_permission(claims, CODEC_USE)
        return
    settings = request.app[SETTINGS]
    if settings.env is Environment.DEVELOPMENT and request.remote in _LOOPBACK:
        return
    raise ProblemError(
        401,
        "unauthenticated",
        "a platform-admin bearer token is required",
        headers={"WWW-Authenticate": 'Bearer realm="adx"'},
    )


async def _read_payloads(request: web.Request) -> Payloads:
    if request.content_type != "application/json":
        raise ProblemError(415, "unsupported-media-type", "send the payloads as application/json")
    try:
        body = json.loads(await request.read())
        payloads = json_format.ParseDict(body, Payloads(), ignore_unknown_fields=True)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, json_format.ParseError):
        raise ProblemError(400, "malformed-body", 'expected {"payloads": [...]}') from None
    if len(payloads.payloads) > _MAX_PAYLOADS:
        raise ProblemError(413, "payload-too-large", f"at most {_MAX_PAYLOADS} payloads a call")
    return payloads


def _handler(
    transform: Callable[[PayloadCodec, Payloads], Awaitable[Payloads]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        _authorise(request)
        codec = _codec(request)
        payloads = await _read_payloads(request)
        try:
            result = await transform(codec, payloads)
        except UnknownKeyError:
            raise ProblemError(
                422, "unknown-key", "a payload uses a key that is not configured"
            ) from None
        except Exception:  # tampered or foreign ciphertext: say so, reveal nothing else
            raise ProblemError(422, "undecryptable", "a payload could not be decrypted") from None
        return web.json_response(json_format.MessageToDict(result))

    return handle


async def _decode(codec: PayloadCodec, payloads: Payloads) -> Payloads:
    return Payloads(payloads=await codec.decode(payloads.payloads))


async def _encode(codec: PayloadCodec, payloads: Payloads) -> Payloads:
    return Payloads(payloads=await codec.encode(payloads.payloads))


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight for the UI's origin; the headers are added by ``cors_headers``."""
    return web.Response(status=204)


def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.headers.get("Origin")
    if origin is None or origin not in request.app[SETTINGS].codec_allowed_origins:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Namespace"
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Access-Control-Max-Age"] = "600"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/codec/decode", _handler(_decode))
    app.router.add_post("/codec/encode", _handler(_encode))
    app.router.add_route("OPTIONS", "/codec/decode", preflight)
    app.router.add_route("OPTIONS", "/codec/encode", preflight)
