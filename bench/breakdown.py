"""Where the time of a 202 goes: the steps of ``POST /v1/tenants``, timed one by one.

The bench process makes the same calls the API handler makes, in the same order, with
the same client configuration (codec, interceptors) and the same database role: verify
the token, validate the body, look the slug up in PostgreSQL and start the workflow; the
202 is then built from what the handler knows. After the 202 path it also times what a
``GET /v1/operations/{id}`` of the just-started operation costs: a describe and a
progress query, which a worker must answer (the first one only after the workflow's first
task). It is measured from another process than the API, so it shows the cost of each
step, not the API's own overhead; the difference to the HTTP figure is HTTP, middleware
and JSON.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client

from adx_api.routes.tenants import CreateTenantIn, start_provisioning
from adx_core.auth import Role, mint_token, verify_token
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
)
from adx_core.db.engine import create_engine, create_sessions
from adx_core.db.repositories import tenant_id_for_slug
from adx_core.settings import Settings
from bench.stats import Series

T = TypeVar("T")

STEPS = (
    "verify_token",
    "validate_body",
    "slug_lookup (SQL)",
    "start_workflow (gRPC)",
)
# Not part of the 202 path: what reading the just-started operation costs. The query is
# made twice, to tell its own round trip from waiting for the first workflow task.
DESCRIBE = "describe (gRPC), in GET of a running operation"
FIRST_QUERY = "progress query (gRPC + worker), first"
REPEAT_QUERY = "progress query again (cached on the worker)"


async def _timed(series: Series, action: Callable[[], Awaitable[T]]) -> T:
    began = time.perf_counter()
    value = await action()
    series.add(time.perf_counter() - began)
    return value


async def breakdown(
    settings: Settings,
    client: Client,
    body: Callable[[str], dict[str, Any]],
    slug: Callable[[int], str],
    *,
    iterations: int,
    budget_seconds: float,
) -> tuple[dict[str, Series], list[str]]:
    """Time each step ``iterations`` times, sequentially; the ids of the workflows started."""
    series = {step: Series(step) for step in (*STEPS, DESCRIBE, FIRST_QUERY, REPEAT_QUERY)}
    user_id = str(uuid.uuid4())
    token = mint_token(
        settings, user_id=user_id, tenant_id=PLATFORM_TENANT_ID, roles=[Role.PLATFORM_ADMIN]
    )
    engine = create_engine(settings)
    sessions = create_sessions(engine)
    started: list[str] = []
    deadline = time.monotonic() + budget_seconds

    async def verify() -> Any:
        return verify_token(settings, token)

    try:
        for index in range(iterations):
            if time.monotonic() >= deadline:
                break
            claims = await _timed(series["verify_token"], verify)
            raw = body(slug(index))

            async def validate(raw: dict[str, Any] = raw) -> CreateTenantIn:
                return CreateTenantIn.model_validate(raw)

            parsed = await _timed(series["validate_body"], validate)

            async def lookup(slug: str = parsed.slug) -> Any:
                async with sessions() as session:
                    return await tenant_id_for_slug(session, slug)

            await _timed(series["slug_lookup (SQL)"], lookup)

            async def start(parsed: CreateTenantIn = parsed, claims: Any = claims) -> Any:
                return await start_provisioning(client, settings, parsed, claims, uuid.uuid4().hex)

            handle = await _timed(series["start_workflow (gRPC)"], start)
            started.append(handle.id)
            await _timed(series[DESCRIBE], handle.describe)

            async def query(handle: Any = handle) -> ProgressSnapshot:
                return await asyncio.wait_for(
                    handle.query(PROGRESS_QUERY, ProgressQuery(0), result_type=ProgressSnapshot),
                    5,
                )

            await _timed(series[FIRST_QUERY], query)
            await _timed(series[REPEAT_QUERY], query)
    finally:
        await engine.dispose()
    return series, started
