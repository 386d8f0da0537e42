"""Where the time of a 202 goes: the steps of ``POST /v1/tenants``, timed one by one.

The bench process makes the same calls the API handler makes, in the same order, with
the same client configuration (codec, interceptors) and the same database role:
verify the token, validate the body, look the slug up in PostgreSQL, start the workflow,
describe it, and query its progress (``operation_response`` builds the operation from a
describe and, for a running workflow, a progress query that a worker must answer). It is
measured from another process than the API, so it shows the cost of each step, not the
API's own overhead; the difference to the HTTP figure is HTTP, middleware and JSON.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from adx_api.routes.tenants import CreateTenantIn
from adx_core.auth import Role, mint_token, verify_token
from adx_core.contracts import search
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
    TASK_QUEUE,
    TENANT_PROVISIONING_WORKFLOW,
    TenantAdmin,
    TenantCreationRequest,
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
    "describe (gRPC)",
    "progress query (gRPC + worker)",
)
# Not part of the 202 path: the same query once more, with the workflow now cached on the
# worker, to tell the query's own round trip from waiting for the first workflow task.
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
    series = {step: Series(step) for step in (*STEPS, REPEAT_QUERY)}
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
            tenant_id = str(uuid.uuid4())
            request = TenantCreationRequest(
                tenant_id=tenant_id,
                slug=parsed.slug,
                display_name=parsed.display_name,
                plan=parsed.plan,
                admin=TenantAdmin(email=parsed.admin.email, name=parsed.admin.name),
                requested_by=claims.user_id,
            )
            attributes = TypedSearchAttributes(
                [
                    SearchAttributePair(search.TENANT_ID, claims.tenant_id),
                    SearchAttributePair(search.CORRELATION_ID, uuid.uuid4().hex),
                    SearchAttributePair(search.STEP, "pending"),
                    SearchAttributePair(search.VARIANT, "default"),
                ]
            )

            async def start(
                request: TenantCreationRequest = request,
                attributes: TypedSearchAttributes = attributes,
            ) -> Any:
                return await client.start_workflow(
                    TENANT_PROVISIONING_WORKFLOW,
                    request,
                    id=f"tenant-provisioning-{request.tenant_id}",
                    task_queue=settings.task_queue(TASK_QUEUE),
                    search_attributes=attributes,
                    memo={"subject_tenant_id": request.tenant_id, "requested_by": user_id},
                )

            handle = await _timed(series["start_workflow (gRPC)"], start)
            started.append(handle.id)
            await _timed(series["describe (gRPC)"], handle.describe)

            async def query(handle: Any = handle) -> ProgressSnapshot:
                return await asyncio.wait_for(
                    handle.query(PROGRESS_QUERY, ProgressQuery(0), result_type=ProgressSnapshot),
                    5,
                )

            await _timed(series["progress query (gRPC + worker)"], query)
            await _timed(series[REPEAT_QUERY], query)
    finally:
        await engine.dispose()
    return series, started
