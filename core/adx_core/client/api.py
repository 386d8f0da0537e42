"""``AdxClient``: the operations API from Python, for scripts and the benchmarks.

One client serves direct routes and workflow routes alike (``start`` and ``run``), and
follows an operation's events over SSE, reconnecting with ``Last-Event-ID`` when the
connection drops, so a caller sees every event once and in order.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json as jsonlib
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from adx_core.client.errors import (
    ApiError,
    ApiProblem,
    OperationFailed,
    StreamUnavailable,
    WaitTimeout,
)
from adx_core.client.models import (
    Answer,
    Event,
    Operation,
    StreamToken,
    is_operation_location,
)
from adx_core.client.sse import SseParser

PROBLEM_JSON = "application/problem+json"
EVENT_STREAM = "text/event-stream"
# The API caps ``Prefer: wait`` at this many seconds; ``run`` waits on the stream after it.
MAX_PREFER_WAIT = 60
# Retry-After is the server's wish, but a script should not sleep for an hour on it.
MAX_RETRY_AFTER = 30.0
# Before the server says otherwise with ``retry:``, and the ceiling of the backoff.
DEFAULT_RECONNECT = 0.5
MAX_RECONNECT = 30.0
_RETRIED_STATUSES = frozenset({429, 503})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return jsonlib.loads(self.body)
        except ValueError:
            raise ApiError(
                self.status, "the answer is not JSON", self.body[:500].decode("utf-8", "replace")
            ) from None


@dataclass
class _StreamState:
    """What outlives one connection of a stream: where to resume, and the server's
    ``retry:`` time (both sticky, as in a browser's EventSource)."""

    last_id: str
    retry_ms: int | None = None


class _Dropped(Exception):
    """The stream broke off (or could not be opened for a passing reason); reconnect."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class AdxClient:
    """An async client of the ADX API. Use it as ``async with AdxClient(url, token) as
    adx:``; pass ``session`` to share an ``aiohttp.ClientSession`` (the client then leaves
    it open; give it a connector without aiohttp's default cap of 100 connections if it is
    to hold more streams than that). ``timeout`` bounds each plain request, plus any
    ``wait`` it asks for."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        stream_retries: int = 5,
        stream_idle_timeout: float = 45.0,
        poll_interval: float = 0.5,
    ) -> None:
        base = URL(base_url)
        if not base.is_absolute():
            raise ValueError(
                f"base_url must be absolute, such as http://127.0.0.1:8080: {base_url}"
            )
        self.base_url = base
        self._token = token
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        self._retries = retries
        self._stream_retries = stream_retries
        # The server pings every 15 s: a stream silent for longer than this is dead.
        self._stream_idle_timeout = stream_idle_timeout
        self._poll_interval = poll_interval

    async def __aenter__(self) -> Self:
        self._http()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> URL:
        """``path`` (``/v1/...``, as in the API's links) on the client's base URL."""
        if "://" in path:
            return URL(path)
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        return URL(str(self.base_url).rstrip("/") + path)

    # -- calls that may start an operation ---------------------------------------------

    async def start(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Call any route. A workflow route's operation is in ``answer.operation`` (finished
        if ``wait`` seconds were enough); a direct route's resource in ``answer.body``."""
        extra = dict(headers or {})
        if idempotency_key is not None:
            extra["Idempotency-Key"] = idempotency_key
        if wait is not None:
            extra["Prefer"] = f"wait={_whole_seconds(wait)}"
        method = method.upper()
        reply = await self._send(
            method,
            path,
            headers=extra,
            json=json,
            body=body,
            content_type=content_type,
            retry=method in _IDEMPOTENT_METHODS,
            extra_time=wait or 0.0,
        )
        location = reply.headers.get("Location")
        data = reply.json()
        operation: Operation | None = None
        if is_operation_location(location):
            operation = Operation.from_json(data)
        elif reply.status == 202:
            # A 202 without the operation's Location: take it for one if it reads as one.
            with contextlib.suppress(ApiError):
                operation = Operation.from_json(data)
        return Answer(reply.status, data, location, operation)

    async def run(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109 (one budget for the call and the wait after it)
    ) -> Any:
        """Call a route and hand back its resource once it is there: a direct answer as is,
        a workflow's result once it has succeeded. Raises ``OperationFailed`` when it ended
        failed or cancelled, and ``WaitTimeout`` when ``timeout`` ran out first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        answer = await self.start(
            method,
            path,
            json=json,
            body=body,
            content_type=content_type,
            idempotency_key=idempotency_key,
            wait=min(timeout, MAX_PREFER_WAIT),
        )
        operation = answer.operation
        if operation is None:
            return answer.body
        if not operation.done:
            operation = await self.wait(operation.id, max(0.0, deadline - loop.time()))
        if not operation.succeeded:
            raise OperationFailed(operation)
        return operation.result

    # -- operations ----------------------------------------------------------------------

    async def get(self, operation_id: str) -> Operation:
        reply = await self._send("GET", _operation_path(operation_id), retry=True)
        return Operation.from_json(reply.json())

    async def result(self, operation_id: str, *, wait: float | None = None) -> Any:
        """The result of a succeeded operation. An unfinished one is an ``ApiProblem`` 409
        of kind ``operation-not-finished``; a failed or cancelled one a 409 with its error."""
        headers = {"Prefer": f"wait={_whole_seconds(wait)}"} if wait is not None else None
        reply = await self._send(
            "GET",
            _operation_path(operation_id, "/result"),
            headers=headers,
            retry=True,
            extra_time=wait or 0.0,
        )
        return reply.json()

    async def cancel(self, operation_id: str, *, wait: float | None = None) -> Operation:
        """Ask for the cancel (the workflow runs its compensation); with ``wait``, the
        operation as it ended if it did within that many seconds."""
        headers = {"Prefer": f"wait={_whole_seconds(wait)}"} if wait is not None else None
        reply = await self._send(
            "POST",
            _operation_path(operation_id, "/cancel"),
            headers=headers,
            retry=False,
            extra_time=wait or 0.0,
        )
        return Operation.from_json(reply.json())

    async def stream_token(self, operation_id: str) -> StreamToken:
        reply = await self._send(
            "POST", _operation_path(operation_id, "/stream-token"), retry=False
        )
        return StreamToken.from_json(reply.json())

    async def wait(
        self,
        operation_id: str,
        timeout: float | None = None,  # noqa: ASYNC109 (WaitTimeout names the operation)
    ) -> Operation:
        """The operation once it has ended (succeeded, failed or cancelled; this does not
        raise for the latter two). Follows the event stream, and polls when the stream
        cannot be had. Raises ``WaitTimeout`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout) as deadline:
                try:
                    async with contextlib.aclosing(self.follow(operation_id)) as events:
                        async for event in events:
                            if event.final:
                                return event.operation()
                except StreamUnavailable:
                    pass  # a proxy that buffers or refuses streams: polling still works
                return await self._poll(operation_id)
        except TimeoutError:
            if deadline.expired():
                raise WaitTimeout(operation_id, timeout) from None
            raise

    async def follow(
        self,
        operation_id: str,
        *,
        last_event_id: str | None = None,
        stream_token: str | None = None,
    ) -> AsyncGenerator[Event, None]:
        """The operation's events, from after ``last_event_id``, up to and including the
        final ``completed``, ``failed`` or ``cancelled``.

        A dropped connection is reopened with ``Last-Event-ID`` after the server's
        ``retry:`` time (doubling while attempts fail in a row); ``StreamUnavailable`` after
        ``stream_retries`` attempts that brought nothing. Resumed after the final event, it
        ends without one. ``stream_token`` authenticates with a token from
        ``stream_token()`` instead of the bearer token.
        """
        path = _operation_path(operation_id, "/events")
        state = _StreamState(last_event_id or "")
        failures = 0
        while True:
            progressed = False
            retry_after: float | None = None
            try:
                response = await self._open_stream(path, state.last_id, stream_token)
                if response is None:
                    return  # 204: the server says there is nothing to follow
                async with contextlib.aclosing(self._read_stream(response, state)) as events:
                    async for event in events:
                        progressed = True
                        yield event
                        if event.final:
                            return
                if not progressed and await self._has_ended(operation_id):
                    return  # resumed after the final event: there is nothing more to say
                reason = "the server closed the stream before the final event"
            except _Dropped as dropped:
                reason, retry_after = str(dropped), dropped.retry_after
            failures = 1 if progressed else failures + 1
            if failures > self._stream_retries:
                raise StreamUnavailable(
                    f"the events of {operation_id} could not be followed "
                    f"({failures} attempts in a row): {reason}"
                )
            await asyncio.sleep(reconnect_delay(failures, state.retry_ms, retry_after))

    async def list(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int = 20,
    ) -> AsyncIterator[Operation]:
        """The caller's tenant's operations, newest first, page after page. List items carry
        no ``result`` or ``error``: ``get`` the operation for those."""
        params = {
            "type": type,
            "status": status,
            "since": _rfc3339(since),
            "until": _rfc3339(until),
            "limit": str(page_size),
        }
        query = {name: value for name, value in params.items() if value is not None}
        while True:
            reply = await self._send("GET", "/v1/operations", params=query, retry=True)
            page = reply.json()
            if not isinstance(page, dict) or not isinstance(page.get("items"), builtins.list):
                raise ApiError(reply.status, "not a page of operations", repr(page)[:200])
            for item in page["items"]:
                yield Operation.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = str(cursor)

    # -- transport -------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # aiohttp holds 100 connections by default: the 101st concurrent follow() would
            # wait for one of the others to end. Streams are long; do not cap them.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": "adx-client", "Accept": f"application/json, {PROBLEM_JSON}"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        headers.update(extra or {})
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        extra_time: float = 0.0,
    ) -> _Reply:
        """One request, answered 2xx, or an ``ApiError``. With ``retry`` (idempotent calls
        only), a 429 or 503 is tried again after its Retry-After, ``retries`` times at most."""
        all_headers = self._headers(headers)
        data: bytes | None = body
        if json is not None:
            data = jsonlib.dumps(json).encode()
            all_headers["Content-Type"] = content_type or "application/json"
        elif body is not None:
            all_headers["Content-Type"] = content_type or "application/octet-stream"
        timeout = aiohttp.ClientTimeout(total=self._timeout + extra_time)
        attempt = 0
        while True:
            async with self._http().request(
                method,
                self.url(path),
                headers=all_headers,
                params=params,
                data=data,
                timeout=timeout,
                raise_for_status=False,
            ) as response:
                reply = _Reply(response.status, response.headers, await response.read())
            if retry and reply.status in _RETRIED_STATUSES and attempt < self._retries:
                attempt += 1
                await asyncio.sleep(retry_after_seconds(reply.headers, attempt))
                continue
            if reply.status >= 400:
                raise error_from(reply.status, reply.headers, reply.body)
            return reply

    async def _open_stream(
        self, path: str, last_id: str, stream_token: str | None
    ) -> aiohttp.ClientResponse | None:
        """The open stream; ``None`` for 204 (nothing to follow); ``_Dropped`` when worth
        another try (no connection, 429, 5xx); an ``ApiError`` for other errors."""
        headers = self._headers({"Accept": EVENT_STREAM, "Cache-Control": "no-cache"})
        params: dict[str, str] | None = None
        if stream_token is not None:
            headers.pop("Authorization", None)
            params = {"access_token": stream_token}
        if last_id:
            headers["Last-Event-ID"] = last_id
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout, sock_read=self._stream_idle_timeout
        )
        try:
            response = await self._http().get(
                self.url(path),
                headers=headers,
                params=params,
                timeout=timeout,
                raise_for_status=False,
            )
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _Dropped(f"the stream could not be opened ({err!r})") from None
        content_type = response.headers.get("Content-Type", "")
        if response.status == 200 and content_type.startswith(EVENT_STREAM):
            return response
        if response.status == 204:
            response.release()
            return None
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            response.release()
        if response.status in _RETRIED_STATUSES or response.status >= 500:
            raise _Dropped(
                f"the server answered {response.status}",
                retry_after_seconds(response.headers, 1, default=None),
            )
        if response.status >= 400:
            raise error_from(response.status, response.headers, body)
        raise StreamUnavailable(
            f"expected an event stream, got {response.status} {content_type or 'no content type'}"
        )

    async def _has_ended(self, operation_id: str) -> bool:
        """Whether a stream that closed without a word did so because the operation has
        ended. Without a bearer token (a stream token only) we cannot ask, and believe the
        server: it closes streams only after the final event."""
        if self._token is None:
            return True
        return (await self.get(operation_id)).done

    async def _read_stream(
        self, response: aiohttp.ClientResponse, state: _StreamState
    ) -> AsyncGenerator[Event, None]:
        """The events of one connection, until it ends; ``_Dropped`` if it breaks off.
        Keeps ``state`` at the resume point of the last event handed out."""
        parser = SseParser(last_event_id=state.last_id)
        try:
            while True:
                try:
                    chunk = await response.content.readany()
                except (aiohttp.ClientError, TimeoutError) as err:
                    raise _Dropped(f"the stream broke off ({err!r})") from None
                if not chunk:
                    return
                for sse in parser.feed(chunk):
                    state.last_id = sse.last_event_id
                    yield Event(sse.last_event_id, sse.type, _json_or_text(sse.data))
                # An id on an event-less block moves the resume point as well.
                state.last_id = parser.last_event_id
                if parser.retry_ms is not None:
                    state.retry_ms = parser.retry_ms
        finally:
            response.close()  # never back into the pool half-read

    async def _poll(self, operation_id: str) -> Operation:
        delay = self._poll_interval
        while True:
            operation = await self.get(operation_id)
            if operation.done:
                return operation
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)


def error_from(status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The error an error answer stands for: an ``ApiProblem`` when it is a problem
    document, an ``ApiError`` with the start of the body otherwise."""
    text = body.decode("utf-8", "replace")
    request_id = headers.get("X-Request-ID")
    content_type = headers.get("Content-Type", "")
    if content_type.startswith(PROBLEM_JSON):
        try:
            problem = jsonlib.loads(text)
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            error: ApiError = ApiProblem(
                status,
                str(problem.get("type") or "about:blank"),
                str(problem.get("title") or f"HTTP {status}"),
                str(problem["detail"]) if problem.get("detail") else None,
                problem,
            )
            error.request_id = request_id
            return error
    snippet = " ".join(text.split())[:200]
    error = ApiError(
        status, f"unexpected {content_type or 'answer'}: {snippet or '(empty)'}", text[:2000]
    )
    error.request_id = request_id
    return error


def retry_after_seconds(
    headers: Mapping[str, str], attempt: int, default: float | None = DEFAULT_RECONNECT
) -> float:
    """Retry-After (seconds or an HTTP date), capped; else a doubling backoff."""
    value = headers.get("Retry-After", "").strip()
    seconds: float | None = None
    if value.isdigit():
        seconds = float(value)
    elif value:
        with contextlib.suppress(TypeError, ValueError):
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    if seconds is None:
        if default is None:
            return 0.0
        seconds = default * 2.0 ** (attempt - 1)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def reconnect_delay(failures: int, retry_ms: int | None, retry_after: float | None) -> float:
    """How long to wait before reconnecting a stream: the server's ``retry:`` time (or our
    default), doubled for each further attempt in a row that failed, capped, and never
    sooner than a Retry-After. Up to a fifth shorter at random, so that many subscribers
    of a restarted server do not all come back in the same instant."""
    base = retry_ms / 1000 if retry_ms is not None else DEFAULT_RECONNECT
    delay = min(base * 2.0 ** (failures - 1), MAX_RECONNECT)
    delay *= 1 - 0.2 * random.random()  # noqa: S311 (jitter, not a secret)
    return max(delay, retry_after or 0.0)


def _operation_path(operation_id: str, suffix: str = "") -> str:
    if not operation_id:
        raise ValueError("an operation id is required")
    return f"/v1/operations/{quote(operation_id, safe='')}{suffix}"


def _whole_seconds(wait: float) -> int:
    """``Prefer: wait`` takes whole seconds; never ask for more than the caller allows."""
    return max(0, int(wait))


def _rfc3339(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("since and until need a timezone (use datetime.now(UTC))")
    return value.isoformat()


def _json_or_text(data: str) -> Any:
    try:
        return jsonlib.loads(data)
    except ValueError:
        return data
