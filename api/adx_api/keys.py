"""Typed application and request keys."""

from __future__ import annotations

from aiohttp import web
from temporalio.client import Client

from adx_api.operation_watch import OperationWatches
from adx_core.auth import Claims, TokenVerifier
from adx_core.context import AuthContext
from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry

SETTINGS = web.AppKey("settings", Settings)
TEMPORAL = web.AppKey("temporal", Client)
SESSIONS = web.AppKey("sessions", Sessions)
# Clients of every configured storage provider, opened on first use (uploads, downloads).
STORES = web.AppKey("stores", StorageRegistry)
# Checks bearer tokens; caches the identity provider's signing keys (adx_api.tokens).
TOKEN_VERIFIER = web.AppKey("token_verifier", TokenVerifier)
# The shared upstream watches behind every operation event stream of this process.
WATCHES = web.AppKey("watches", OperationWatches)

# Request-scoped values, set by the middlewares.
CLAIMS = web.RequestKey("claims", Claims)
CONTEXT = web.RequestKey("context", AuthContext)


def claims_of(request: web.Request) -> Claims:
    try:
        return request[CLAIMS]
    except KeyError:
        raise RuntimeError("route reached without authentication") from None


def context_of(request: web.Request) -> AuthContext:
    try:
        return request[CONTEXT]
    except KeyError:
        raise RuntimeError("route reached without a request context") from None
