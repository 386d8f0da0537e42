"""Operations: status, Server-Sent Events and cancel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from adx_api.keys import TEMPORAL, claims_of, context_of
from adx_api.operations import TERMINAL, Operations, status_of
from adx_api.problems import ProblemError
from adx_api.routes.common import require_role
from adx_core.auth import Role
from adx_core.contracts.progress import ProgressEvent

POLL_SECONDS = 0.25
PING_SECONDS = 15.0
_TERMINAL_EVENT = {"succeeded": "completed", "failed": "failed", "cancelled": "cancelled"}


def _operations(request: web.Request) -> Operations:
    return Operations(request.app[TEMPORAL])


async def get_operation(request: web.Request) -> web.Response:
    operation = await _operations(request).get(request.match_info["id"], claims_of(request))
    return web.json_response(operation.to_json())


async def cancel_operation(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, Role.PLATFORM_ADMIN, Role.TENANT_ADMIN, Role.MEMBER)
    operations = _operations(request)
    handle, description = await operations.describe(request.match_info["id"], claims)
    operation = await operations.build(handle, description)
    if operation.status in TERMINAL:
        raise ProblemError(409, "conflict", f"the operation has already {operation.status}")
    await handle.cancel()
    return web.json_response(operation.to_json(), status=202)


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    if raw.isdigit() and len(raw) <= 9:
        return int(raw)
    return 0


def _event_data(event: ProgressEvent) -> str:
    return json.dumps(
        {
            "phase": event.kind.value,
            "step": event.step,
            "percent": event.percent,
            "counters": event.counters,
            "detail": event.detail,
            "at": event.at.isoformat(),
        }
    )


async def operation_events(request: web.Request) -> web.StreamResponse:
    """Stream ``step`` events, then one final ``completed``, ``failed`` or ``cancelled``.

    Event ids are the workflow's own sequence numbers, and the final event's id is one past
    the last step event, so ``Last-Event-ID`` resumes exactly where the client left off.
    """
    claims = claims_of(request)
    operations = _operations(request)
    # Checked before the stream opens, so an unknown or foreign id is a plain 404.
    handle, description = await operations.describe(request.match_info["id"], claims)
    after = _last_event_id(request)
    # The middleware cannot add headers once the stream has started; set ours up front.
    headers = {"X-Request-ID": context_of(request).correlation_id, "Cache-Control": "no-cache"}
    async with sse_response(request, ping_interval=PING_SECONDS, headers=headers) as sse:
        while sse.is_connected():
            # Status first, events second: once closed, the query holds every event.
            terminal = status_of(description) in TERMINAL
            snapshot = await operations.progress(handle, after)
            last_seq = after
            if snapshot is not None:
                for event in snapshot.events:
                    await sse.send(_event_data(event), id=str(event.seq), event="step")
                    after = event.seq
                last_seq = snapshot.last_seq
            if terminal:
                await _send_final(sse, operations, handle, description, last_seq, after)
                break
            await asyncio.sleep(POLL_SECONDS)
            description = await handle.describe()
    return sse


async def _send_final(
    sse: Any,
    operations: Operations,
    handle: Any,
    description: Any,
    last_seq: int,
    after: int,
) -> None:
    final_id = last_seq + 1
    if after >= final_id:
        return  # the client already has the final event
    operation = await operations.build(handle, description)
    await sse.send(
        json.dumps(operation.to_json()),
        id=str(final_id),
        event=_TERMINAL_EVENT[operation.status],
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/operations/{id}", get_operation)
    app.router.add_get("/v1/operations/{id}/events", operation_events)
    app.router.add_post("/v1/operations/{id}/cancel", cancel_operation)
