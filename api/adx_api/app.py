"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from sqlalchemy import text
from temporalio.client import Client
from temporalio.service import RetryConfig

from adx_api import keys
from adx_api.body_limits import body_limit_middleware
from adx_api.cors import add_cors_headers, cors_middleware
from adx_api.idempotency import idempotency_middleware, sweeper
from adx_api.middleware import auth_middleware, context_middleware, problem_middleware
from adx_api.openapi import openapi_json
from adx_api.operation_watch import OperationWatches
from adx_api.rate_limit import rate_limit_ctx, rate_limit_middleware
from adx_api.routes import (
    codec,
    file_lifecycle,
    files,
    groups,
    operations,
    shares,
    storage,
    tenant_reads,
    tenants,
    upgrade,
    uploads,
    users,
)
from adx_api.tokens import token_verifier_ctx
from adx_core.db.engine import Sessions, create_engine, create_sessions
from adx_core.metrics import temporal_runtime
from adx_core.ops_http import add_ops_routes
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry
from adx_core.temporal.client import connect

CleanupContext = Callable[[web.Application], AsyncIterator[None]]

# A request must not hang while Temporal is away: retry briefly (about 2 s in all), then
# answer 503 and let the client retry. Workers keep the SDK's longer default.
API_RPC_RETRY = RetryConfig(
    initial_interval_millis=100, max_interval_millis=800, multiplier=2.0, max_retries=4
)


def create_app(
    settings: Settings,
    *,
    temporal: Client | None = None,
    sessions: Sessions | None = None,
) -> web.Application:
    """Build the API. Connections are opened in ``cleanup_ctx`` unless given (tests share
    one Temporal client and session factory across apps)."""
    if settings.jwt_secret is None:
        raise ValueError("the API needs ADX_JWT_SECRET to check tokens")
    app = web.Application(
        middlewares=[
            context_middleware,
            problem_middleware,
            cors_middleware,
            body_limit_middleware,
            auth_middleware,
            rate_limit_middleware,  # after auth: it counts per tenant, from the claims
            # Innermost: a request past the rate limit never reaches the key's record.
            idempotency_middleware,
        ],
        # The default bound of request.read(); body_limits sets each route's own.
        client_max_size=settings.max_body_bytes,
    )
    app[keys.SETTINGS] = settings
    # A signal, not a middleware: streams are prepared before a middleware sees them.
    app.on_response_prepare.append(add_cors_headers)
    app.cleanup_ctx.append(_temporal_ctx(settings, temporal))
    app.cleanup_ctx.append(_database_ctx(settings, sessions))
    app.cleanup_ctx.append(_storage_ctx(settings))
    app.cleanup_ctx.append(token_verifier_ctx)
    app.cleanup_ctx.append(rate_limit_ctx)
    app.cleanup_ctx.append(_watches_ctx(settings))
    app.cleanup_ctx.append(sweeper)  # purges expired Idempotency-Key records

    async def database() -> None:
        async with app[keys.SESSIONS]() as session:
            await session.execute(text("SELECT 1"))

    async def temporal_health() -> None:
        await app[keys.TEMPORAL].service_client.check_health()

    add_ops_routes(app, DEFAULT_REGISTRY, {"database": database, "temporal": temporal_health})
    app.router.add_get("/openapi.json", openapi_json)
    tenants.add_routes(app)
    tenant_reads.add_routes(app)
    upgrade.add_routes(app)
    users.add_routes(app)
    storage.add_routes(app)
    files.add_routes(app)
    file_lifecycle.add_routes(app)
    uploads.add_routes(app)
    operations.add_routes(app)
    codec.add_routes(app)
    shares.add_routes(app)
    groups.add_routes(app)
    return app


def _temporal_ctx(settings: Settings, given: Client | None) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[keys.TEMPORAL] = given or await connect(
            settings, runtime=temporal_runtime(), identity="adx-api", retry_config=API_RPC_RETRY
        )
        yield

    return ctx


def _storage_ctx(settings: Settings) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[keys.STORES] = StorageRegistry(settings)
        yield
        await app[keys.STORES].close()

    return ctx


def _watches_ctx(settings: Settings) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[keys.WATCHES] = OperationWatches(app[keys.TEMPORAL], settings.sse_fallback_poll_seconds)
        yield
        await app[keys.WATCHES].close()

    return ctx


def _database_ctx(settings: Settings, given: Sessions | None) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if given is not None:
            app[keys.SESSIONS] = given
            yield
            return
        engine = create_engine(settings)
        app[keys.SESSIONS] = create_sessions(engine)
        yield
        await engine.dispose()

    return ctx
