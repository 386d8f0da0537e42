"""Operations: list, status, result, cancel, and progress as Server-Sent Events.

Every route looks an operation up through ``Operations.describe``, which answers another
tenant's id exactly like an unknown one (404).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from adx_api.keys import CLAIMS, SESSIONS, SETTINGS, TEMPORAL, WATCHES, claims_of, context_of
from adx_api.operation_list import decode_cursor, encode_cursor, parse_filter, visibility_query
from adx_api.operations import TERMINAL, Operations, status_of, validate_id
from adx_api.problems import TYPE_BASE, ProblemError, invalid_token
from adx_api.routes.common import prefer_wait, require_permission
from adx_api.stream_tokens import mint_stream_token, verify_stream_token
from adx_core.auth import AuthError, Claims
from adx_core.contracts.permissions import OPERATIONS_CANCEL, OPERATIONS_READ
from adx_core.sessions import session_is_active

# How often a subscriber waiting for the next event checks that its client is still there.
_DISCONNECT_CHECK_SECONDS = 5.0
# How long a resuming client waits for a new watch to catch up before its answer.
_SYNC_SECONDS = 3.0
# The reconnect delay each stream announces (SSE `retry`): this plus up to as much again,
# at random, so that clients cut off together do not all come back in the same instant.
RETRY_BASE_MS = 1000
# The query parameter an EventSource carries its stream token in.
STREAM_TOKEN_PARAM = "access_token"  # noqa: S105 - a parameter name, not a secret


def _operations(request: web.Request) -> Operations:
    return Operations(request.app[TEMPORAL])


def _reader(request: web.Request) -> Claims:
    claims = claims_of(request)
    require_permission(claims, OPERATIONS_READ)
    return claims


async def list_operations(request: web.Request) -> web.Response:
    claims = _reader(request)
    wanted = parse_filter(request.query)
    query = visibility_query(claims.tenant_id, wanted)
    page_token = decode_cursor(query, wanted.cursor)
    try:
        items, next_token = await _operations(request).page(query, wanted.limit, page_token)
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT and page_token is not None:
            raise ProblemError(400, "bad-query", "the cursor has expired; start again") from None
        raise
    return web.json_response(
        {
            "items": [item.to_json() for item in items],
            "next_cursor": encode_cursor(query, next_token),
        }
    )


async def get_operation(request: web.Request) -> web.Response:
    operation = await _operations(request).get(request.match_info["id"], _reader(request))
    return web.json_response(operation.to_json())


async def operation_result(request: web.Request) -> web.Response:
    """The result of a succeeded operation as the workflow returned it. ``Prefer: wait=N``
    waits up to N seconds for it to finish."""
    operations = _operations(request)
    handle, description = await operations.describe(request.match_info["id"], _reader(request))
    wait = prefer_wait(request)
    known: dict[str, Any] = {}
    if wait is not None and status_of(description) not in TERMINAL:
        with contextlib.suppress(TimeoutError, WorkflowFailureError):
            known["known_result"] = await asyncio.wait_for(handle.result(), wait)
        description = await handle.describe()
    operation = await operations.build(handle, description, **known)
    headers = {"Preference-Applied": f"wait={wait}"} if wait is not None else {}
    if operation.status == "succeeded":
        return web.json_response(operation.result, headers=headers)
    if operation.status not in TERMINAL:
        raise ProblemError(
            409,
            "operation-not-finished",
            f"the operation is {operation.status}; follow its events or ask again",
            title="The operation has not finished",
            headers={**headers, "Retry-After": "1"},
            operation=operation.id,
            operation_status=operation.status,
        )
    error = operation.error or {}
    raise ProblemError(
        409,
        str(error.get("type", f"{TYPE_BASE}operation-failed")).removeprefix(TYPE_BASE),
        error.get("detail"),
        title=error.get("title"),
        headers=headers,
        operation=operation.id,
        step=error.get("step"),
        code=error.get("code"),
    )


async def cancel_operation(request: web.Request) -> web.Response:
    """Ask the workflow to cancel; it runs its compensation and ends ``cancelled``.
    ``Prefer: wait=N`` answers 200 once it has ended (within N seconds)."""
    claims = claims_of(request)
    require_permission(claims, OPERATIONS_CANCEL)
    operations = _operations(request)
    handle, description = await operations.describe(request.match_info["id"], claims)
    if status_of(description) in TERMINAL:
        operation = await operations.build(handle, description)
        raise ProblemError(
            409,
            "operation-ended",
            f"the operation has already {operation.status}",
            title="The operation has already ended",
            operation_status=operation.status,
        )
    await handle.cancel()
    headers = {"Location": f"/v1/operations/{handle.id}"}
    wait = prefer_wait(request)
    if wait is None:
        operation = await operations.build(handle, description)
        return web.json_response(operation.to_json(), status=202, headers=headers)
    headers["Preference-Applied"] = f"wait={wait}"
    with contextlib.suppress(TimeoutError, WorkflowFailureError):
        await asyncio.wait_for(handle.result(), wait)
    operation = await operations.build(handle, await handle.describe())
    status = 200 if operation.status in TERMINAL else 202
    return web.json_response(operation.to_json(), status=status, headers=headers)


async def create_stream_token(request: web.Request) -> web.Response:
    """A short-lived token that opens this operation's event stream and nothing else."""
    claims = _reader(request)
    handle, _ = await _operations(request).describe(request.match_info["id"], claims)
    token, expires_at = mint_stream_token(request.app[SETTINGS], claims, handle.id)
    events_url = f"/v1/operations/{handle.id}/events?{STREAM_TOKEN_PARAM}={token}"
    return web.json_response(
        {"token": token, "expires_at": expires_at.isoformat(), "events_url": events_url},
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def stream_claims(request: web.Request) -> Claims:
    """The caller of an events request: the bearer token's claims, or a stream token
    issued for this very operation (which, like the session token it was issued for, ends
    with its session)."""
    if CLAIMS in request:
        return request[CLAIMS]
    token = request.query.get(STREAM_TOKEN_PARAM, "")
    try:
        claims = verify_stream_token(request.app[SETTINGS], token, request.match_info["id"])
    except AuthError as err:
        raise invalid_token(err.message, err.kind) from None
    if claims.session_id is not None and not await session_is_active(
        request.app[SESSIONS], claims.tenant_id, claims.session_id
    ):
        raise invalid_token("the session has ended", "revoked")
    return claims


def _last_event_id(request: web.Request) -> int:
    """Where to resume: the browser's ``Last-Event-ID`` header on a reconnect, or a
    ``last_event_id`` query parameter for the first connection of a new page."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id", "")
    raw = raw.strip()
    if raw.isdigit() and len(raw) <= 9:
        return int(raw)
    return 0


async def operation_events(request: web.Request) -> web.StreamResponse:
    """``step`` and ``progress`` events, then one final ``completed``, ``failed`` or
    ``cancelled``, from the operation's shared watch (see ``adx_api.operation_watch``)."""
    claims = await stream_claims(request)
    require_permission(claims, OPERATIONS_READ)
    watches = request.app[WATCHES]
    # Checked before the stream opens, so an unknown or foreign id is a plain 404.
    watch = await watches.watch(validate_id(request.match_info["id"]), claims)
    after = _last_event_id(request)
    if after > 0:
        await watch.synced(_SYNC_SECONDS)
        if watch.final is not None and after >= watch.final.id:
            # The client has everything. 204 is what tells an EventSource to stop
            # reconnecting; an empty stream that closes would make it retry forever.
            return web.Response(status=204, headers={"Cache-Control": "no-cache"})
    settings = request.app[SETTINGS]
    # The middleware cannot add headers once the stream has started; set ours up front.
    headers = {"X-Request-ID": context_of(request).correlation_id, "Cache-Control": "no-cache"}
    async with (
        watches.subscribed(watch),
        sse_response(request, ping_interval=settings.sse_keepalive_seconds, headers=headers) as sse,
    ):
        await sse.write(f"retry: {RETRY_BASE_MS + secrets.randbelow(RETRY_BASE_MS)}\n\n".encode())
        while True:
            changed = watch.signal()  # before reading, so no change slips between
            for event in watch.events_after(after):
                await sse.send(event.data, id=str(event.id), event=event.kind)
                after = event.id
            if watch.final is not None and after >= watch.final.id:
                break
            if not await _changed_while_connected(changed, request):
                break
    return sse


async def _changed_while_connected(changed: asyncio.Event, request: web.Request) -> bool:
    """Wait for the watch to change; ``False`` once the client has gone away."""
    while True:
        try:
            await asyncio.wait_for(changed.wait(), _DISCONNECT_CHECK_SECONDS)
            return True
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return False


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/operations", list_operations)
    app.router.add_get("/v1/operations/{id}", get_operation)
    app.router.add_get("/v1/operations/{id}/result", operation_result)
    app.router.add_get("/v1/operations/{id}/events", operation_events)
    app.router.add_post("/v1/operations/{id}/cancel", cancel_operation)
    app.router.add_post("/v1/operations/{id}/stream-token", create_stream_token)
