"""``Idempotency-Key`` on every POST and PATCH (the IETF draft "The Idempotency-Key HTTP
Header Field"): a client that repeats a request with the same key gets the first request's
answer, not a second execution.

A key belongs to its caller: tenant, user and key together name one record, so another
user's or another tenant's key of the same spelling is another key.

- **First request.** An in-flight record is claimed, the handler runs, and a 2xx answer is
  stored. Anything else (4xx, 5xx, an exception) releases the key, so that the client can
  correct the request and send it again under the same key.
- **Repeat, same request** (same fingerprint: sha256 of method, path with query, and body):
  the stored answer with ``Idempotent-Replayed: true``. If that answer was an operation
  (``Location: /v1/operations/<id>``), the repeat gets the operation as it is now, 200 once
  it has ended and 202 before, and ``Prefer: wait`` applies as it does on the first request:
  "a repeat returns the original operation".
- **Repeat, different request**: 422 ``idempotency-key-reused``.
- **Repeat while the first still runs**: it waits for the first (a client that timed out and
  retried at once races its own request), then answers with exactly what the first
  answered. Past ``IN_FLIGHT_WAIT`` seconds (plus its own ``Prefer: wait``), 409
  ``idempotency-key-in-flight`` with ``Retry-After: 1``.
- Records live ``settings.idempotency_ttl_seconds``; an expired record counts as absent and
  is overwritten, and ``sweeper`` purges them.

Routes that cannot take part are listed, with why, in ``EXEMPT_ROUTES``: a body that is
streamed to storage cannot be fingerprinted without holding it in memory, and those routes
derive their workflow or upload id from the key themselves. Every other POST and PATCH is
covered by default, including routes added later. A route behind this middleware reads its body
with ``read()``, ``json()`` or ``text()`` (the fingerprint has consumed the stream, so it
tests ``body_exists``, not ``can_read_body``).

Answers that carry a credential (``Cache-Control: no-store``, such as a tenant switch's
token) are never written to the database: their key is released instead, and a repeat
issues a fresh credential for the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from aiohttp import web
from sqlalchemy import delete, func, text, update
from sqlalchemy.dialects.postgresql import insert

from adx_api.keys import CLAIMS, SESSIONS, SETTINGS
from adx_api.operations import OPERATION_ID
from adx_api.problems import ProblemError
from adx_api.routes.common import existing_operation, idempotency_key, prefer_wait
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import IdempotencyRecord
from adx_core.logging import get_logger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = get_logger(__name__)

# Names the API description and the docs use.
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_REUSED = "idempotency-key-reused"
KEY_IN_FLIGHT = "idempotency-key-in-flight"
BAD_KEY = "bad-idempotency-key"  # raised by routes.common.idempotency_key

METHODS = frozenset({"POST", "PATCH"})
# How long a repeat waits for the first request before answering 409.
IN_FLIGHT_WAIT = 2.0
# A record still in flight after this long belongs to a request that died with its
# process (a request lasts at most Prefer: wait's 60 s and change); a new one may take it.
STALE_AFTER = timedelta(minutes=5)
# Larger answers are not stored (no POST answers that much); their key is released.
MAX_STORED_BODY = 256 * 1024
# The answer's headers a replay repeats; others (X-Request-ID, Date) belong to each answer.
STORED_HEADERS = ("Location", "Content-Type")
SWEEP_SECONDS = 600.0
SWEEP_BATCH = 1000

# The POST and PATCH routes left alone, each with why. Everything else is covered.
EXEMPT_ROUTES: Mapping[tuple[str, str], str] = {
    ("POST", "/v1/files"): "the body streams into storage and cannot be fingerprinted; the "
    "route derives the file and its workflow from the key, and answers a repeat itself",
    ("POST", "/v1/uploads"): "tus creation: the route derives the upload session from the "
    "key, and a repeat finds the same session",
    ("PATCH", "/v1/uploads/{id}"): "tus append: the body streams into storage, and "
    "Upload-Offset already makes a repeated segment harmless",
    ("POST", "/codec/encode"): "a pure function of the body, changing nothing: a repeat "
    "computes the same answer, and callers may be anonymous (no scope for a key)",
    ("POST", "/codec/decode"): "a pure function of the body, changing nothing: a repeat "
    "computes the same answer, and callers may be anonymous (no scope for a key)",
}
_SCOPE = frozenset({"tenant_id", "user_id", "key"})
_OPERATION_LOCATION = re.compile(r"^/v1/operations/(?P<id>[^/?#]+)$")


def exempt_reason(request: web.Request) -> str | None:
    """Why the middleware leaves the request's route alone, if it does."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return EXEMPT_ROUTES.get((request.method, resource.canonical))


def exempt_routes(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, path, reason) of every registered route the middleware leaves alone."""
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    return sorted(
        (method, path, reason)
        for (method, path), reason in EXEMPT_ROUTES.items()
        if (method, path) in registered
    )


def fingerprint(method: str, path_qs: str, body: bytes) -> str:
    """What makes a repeat "the same request": method, path with query, and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), b"\n", path_qs.encode(), b"\n", body):
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class Scope:
    tenant_id: uuid.UUID
    user_id: str
    key: str

    @classmethod
    def of(cls, request: web.Request, key: str) -> Scope:
        claims = request[CLAIMS]
        user = claims.user_id
        if len(user) > 255:  # a subject from an identity provider can be any length
            user = "sha256:" + hashlib.sha256(user.encode()).hexdigest()
        return cls(uuid.UUID(claims.tenant_id), user, key)

    def where(self) -> Any:
        return (
            (IdempotencyRecord.tenant_id == self.tenant_id)
            & (IdempotencyRecord.user_id == self.user_id)
            & (IdempotencyRecord.key == self.key)
        )


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in METHODS or CLAIMS not in request:
        return await handler(request)  # anonymous callers (the codec) have no scope
    if request.match_info.http_exception is not None or exempt_reason(request) is not None:
        return await handler(request)
    key = idempotency_key(request)  # 400 bad-idempotency-key for a malformed one
    if key is None:
        return await handler(request)
    body = await request.read()  # bounded by client_max_size; cached for the handler
    request_fp = fingerprint(request.method, request.raw_path, body)
    scope = Scope.of(request, key)
    deadline = asyncio.get_running_loop().time() + IN_FLIGHT_WAIT + (prefer_wait(request) or 0)
    pause = 0.02
    waited = False
    while True:
        attempt = uuid.uuid4()
        record = await _claim(request, scope, attempt, request_fp)
        if record is True:
            return await _first(request, handler, scope, attempt)
        # ``None``: released between our insert and our read; the next round claims it.
        if record is not None and record.fingerprint != request_fp:
            raise ProblemError(
                422,
                KEY_REUSED,
                "this Idempotency-Key was used for a different request",
                title="Idempotency-Key reused",
            )
        if record is not None and record.status is not None:
            return await _replay(request, record, waited=waited)
        if asyncio.get_running_loop().time() >= deadline:
            raise ProblemError(
                409,
                KEY_IN_FLIGHT,
                "a request with this Idempotency-Key is still being processed; retry shortly",
                title="Idempotency-Key in flight",
                headers={"Retry-After": "1"},
            )
        waited = True
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.25)


async def _claim(
    request: web.Request, scope: Scope, attempt: uuid.UUID, request_fp: str
) -> Literal[True] | IdempotencyRecord | None:
    """Insert our in-flight record, taking over an expired or abandoned one (``True``);
    else the record that holds the key (``None`` if it vanished meanwhile)."""
    ttl = timedelta(seconds=request.app[SETTINGS].idempotency_ttl_seconds)
    route = request.match_info.route.resource
    values = {
        "tenant_id": scope.tenant_id,
        "user_id": scope.user_id,
        "key": scope.key,
        "attempt": attempt,
        "method": request.method,
        "route": (route.canonical if route is not None else request.path)[:255],
        "fingerprint": request_fp,
        "status": None,
        "headers": {},
        "body": None,
        "created_at": func.now(),
        "expires_at": func.now() + ttl,
    }
    inserted = insert(IdempotencyRecord).values(**values)
    taken_over = (IdempotencyRecord.expires_at <= func.now()) | (
        IdempotencyRecord.status.is_(None)
        & (IdempotencyRecord.created_at < func.now() - STALE_AFTER)
    )
    statement = inserted.on_conflict_do_update(
        index_elements=["tenant_id", "user_id", "key"],
        set_={name: getattr(inserted.excluded, name) for name in values if name not in _SCOPE},
        where=taken_over,
    ).returning(IdempotencyRecord.attempt)
    async with tenant_session(request.app[SESSIONS], scope.tenant_id) as session:
        if await session.scalar(statement) == attempt:
            return True
        return await session.get(IdempotencyRecord, (scope.tenant_id, scope.user_id, scope.key))


async def _first(
    request: web.Request, handler: Handler, scope: Scope, attempt: uuid.UUID
) -> web.StreamResponse:
    """Run the request for real; keep a 2xx answer, release the key on anything else."""
    sessions = request.app[SESSIONS]
    try:
        response = await handler(request)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(_release(sessions, scope, attempt))
        raise
    try:
        if _storable(response):
            assert isinstance(response, web.Response)
            await _store(sessions, scope, attempt, response)
        else:
            await _release(sessions, scope, attempt)
    except Exception:
        # The answer stands; the record stays in flight until it is stale.
        log.warning("idempotency record not saved", exc_info=True)
    return response


def _storable(response: web.StreamResponse) -> bool:
    if not 200 <= response.status < 300 or response.prepared:
        return False
    if not isinstance(response, web.Response):
        return False
    if "no-store" in response.headers.get("Cache-Control", "").lower():
        return False  # a credential: never written down
    body = response.body
    return body is None or (isinstance(body, bytes) and len(body) <= MAX_STORED_BODY)


async def _store(
    sessions: Sessions, scope: Scope, attempt: uuid.UUID, response: web.Response
) -> None:
    headers = {name: response.headers[name] for name in STORED_HEADERS if name in response.headers}
    body = response.body
    async with tenant_session(sessions, scope.tenant_id) as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(scope.where(), IdempotencyRecord.attempt == attempt)
            .values(
                status=response.status,
                headers=headers,
                body=body if isinstance(body, bytes) else None,
            )
        )


async def _release(sessions: Sessions, scope: Scope, attempt: uuid.UUID) -> None:
    async with tenant_session(sessions, scope.tenant_id) as session:
        await session.execute(
            delete(IdempotencyRecord).where(scope.where(), IdempotencyRecord.attempt == attempt)
        )


async def _replay(request: web.Request, record: IdempotencyRecord, *, waited: bool) -> web.Response:
    """A repeat's answer. One that waited for the first request gets exactly its answer
    (they are the same moment); a later one gets an operation as it is now."""
    location = record.headers.get("Location")
    found = _OPERATION_LOCATION.match(location) if isinstance(location, str) else None
    if found is not None and not waited:
        current = await _current_operation(request, found["id"])
        if current is not None:
            current.headers[REPLAYED_HEADER] = "true"
            return current
    # Temporal forgets ended workflows after its retention: then the stored answer.
    headers = {str(name): str(value) for name, value in record.headers.items()}
    headers[REPLAYED_HEADER] = "true"
    assert record.status is not None
    return web.Response(status=record.status, body=record.body, headers=headers)


async def _current_operation(request: web.Request, operation_id: str) -> web.Response | None:
    """The operation as it is now (see ``existing_operation``); ``None`` if Temporal no
    longer knows it."""
    if not OPERATION_ID.match(operation_id):
        return None
    return await existing_operation(request, operation_id)


async def purge_expired(sessions: Sessions, batch: int = SWEEP_BATCH) -> int:
    """Delete every expired record of every tenant; the number deleted.

    The app role sees one tenant at a time (row-level security), so it cannot sweep the
    table itself: the SECURITY DEFINER function adx_purge_idempotency_records does, and
    deletes only expired rows, in batches so that no transaction grows large.
    """
    total = 0
    while True:
        async with sessions() as session, session.begin():
            deleted = await session.scalar(
                text("SELECT adx_purge_idempotency_records(:batch)"), {"batch": batch}
            )
        total += int(deleted or 0)
        if not deleted or deleted < batch:
            return total


async def sweeper(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: purge expired records every ``SWEEP_SECONDS`` or so.

    In the API rather than in a Temporal schedule: every replica runs it (the purge is a
    cheap indexed delete, and a second sweeper finds nothing), so it needs no deployment
    of its own. The jitter spreads the replicas' sweeps.
    """

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS * random.uniform(0.5, 1.0))  # noqa: S311
            try:
                purged = await purge_expired(app[SESSIONS])
            except Exception as err:  # the database is away: try again next time
                log.warning("idempotency purge failed", error=type(err).__name__)
                continue
            if purged:
                log.info("idempotency records purged", count=purged)

    task = asyncio.create_task(sweep_forever(), name="idempotency-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
