"""Part 3 of the API benchmarks: 1,000 SSE subscribers on one ``adx api`` process.

Fifty ``bench_ticker_workflow`` operations (bench.api_workflows) of the bench tenant run on
the bench API's worker; each waits for a ``go`` signal, then reports progress every
``tick_seconds`` (a step starts and finishes, or its counters move) for about 15 s. Twenty
subscribers per operation open ``GET /v1/operations/{id}/events`` with the tenant admin's
token (at most ``CONNECTING`` connections being opened at once); when every stream is
open, the bench signals ``go`` to all fifty. Each subscriber reads its stream to the end
with ``adx_core.client.sse.SseParser``.

For each ``step`` and ``progress`` event, the delay is the time it was received (this
machine's clock) less its ``at`` (the workflow's time when it recorded the change, from the
same clock: the Temporal server runs here). For the final event, the receive time less the
operation's ``updated_at`` (its close time). Every subscriber must see the events 1..N and
the final event N+1 once each, in order.

The API's ``/metrics``, read before the subscribers connect, before ``go`` and at the end,
counts its Temporal RPCs: one describe per watch started, and the history long polls and
progress queries that keep the watches up to date.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from adx_api.operations import search_attributes
from adx_core.client.sse import SseParser
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.settings import Settings
from bench.api_client import Samples, delta, scrape
from bench.api_results import Rss, SsePart
from bench.api_workflows import (
    GO_SIGNAL,
    TASK_QUEUE,
    TICKER_WORKFLOW,
    TickerPlan,
    ticker_events,
)
from bench.procstat import Meter, Span

OPERATIONS = 50
PER_OPERATION = 20
TICKS = 15
TICKS_PER_STEP = 3
# Fifty operations pausing 0.4 s between ticks in an activity (about 85 progress changes a
# second) kept this machine's Temporal dev server busy on a whole core with nobody
# following them. A tick a second (the shortest timer the dev server has) it keeps up with.
TICK_SECONDS = 1.0
CONNECTING = 100  # connections being opened at once
CONNECT_BUDGET_SECONDS = 60.0
STREAM_BUDGET_SECONDS = 60.0
QUERY_EVERY = 0.1
# Past every event a ticker has: the answer is the snapshot without events.
_NO_EVENTS = 1_000_000
RPCS = ("DescribeWorkflowExecution", "QueryWorkflow", "GetWorkflowExecutionHistory")
_FINAL = frozenset({"completed", "failed", "cancelled"})


def plan_for(index: int) -> TickerPlan:
    return TickerPlan(
        ticks=TICKS,
        ticks_per_step=TICKS_PER_STEP,
        tick_seconds=TICK_SECONDS,
        offset_seconds=round(TICK_SECONDS * index / OPERATIONS, 3),
    )


@dataclass
class Subscriber:
    operation_id: str
    expected: int  # step and progress events; the final event is one more
    last_id: int = 0
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    final: bool = False
    final_id: int = 0
    # (the change's time, its delay), both in seconds
    delays: list[tuple[float, float]] = field(default_factory=list)
    final_delay: float | None = None
    closed_at: float | None = None
    failure: str | None = None

    def take(self, kind: str, event_id: str, data: str, now: float) -> None:
        self.received += 1
        number = int(event_id) if event_id.isdigit() else -1
        if number <= self.last_id:
            self.duplicates += 1
            return
        if number != self.last_id + 1:
            self.out_of_order += 1
        self.last_id = number
        body = json.loads(data)
        if kind in _FINAL:
            self.final = True
            self.final_id = number
            self.closed_at = datetime.fromisoformat(body["updated_at"]).timestamp()
            self.final_delay = now - self.closed_at
        else:
            at = datetime.fromisoformat(body["at"]).timestamp()
            self.delays.append((at, now - at))

    @property
    def missing(self) -> int:
        seen = self.received - self.duplicates
        return max(0, self.expected + 1 - seen)


@dataclass
class Opening:
    """The subscribers' connections being opened: at most ``CONNECTING`` at once, and an
    event set once every one of them is open (or has failed)."""

    total: int
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONNECTING))
    seconds: list[float] = field(default_factory=list)
    all_open: asyncio.Event = field(default_factory=asyncio.Event)
    tried: int = 0

    def tried_one(self) -> None:
        self.tried += 1
        if self.tried == self.total:
            self.all_open.set()


async def _follow(
    session: aiohttp.ClientSession, url: str, token: str, subscriber: Subscriber, opening: Opening
) -> None:
    parser = SseParser()
    response: aiohttp.ClientResponse | None = None
    try:
        async with opening.gate:
            began = time.perf_counter()  # not counting the wait for the gate
            response = await session.get(
                url, headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            )
        opening.seconds.append(time.perf_counter() - began)
    except (aiohttp.ClientError, TimeoutError) as err:
        subscriber.failure = f"connect: {type(err).__name__}"
    finally:
        opening.tried_one()
    if response is None:
        return
    try:
        if response.status != 200:
            subscriber.failure = f"HTTP {response.status}"
            return
        async for chunk in response.content.iter_any():
            now = time.time()
            for event in parser.feed(chunk):
                subscriber.take(event.type, event.last_event_id, event.data, now)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as err:
        subscriber.failure = f"stream: {type(err).__name__}"
    finally:
        response.release()


async def measure(
    settings: Settings,
    client: Client,
    api_url: str,
    tenant_id: str,
    token: str,
    meter: Meter,
    part: SsePart,
) -> None:
    """``meter`` watches the stack's processes, the API as ``api``: CPU while streaming, and
    RSS (sampled only then)."""
    handles = await _start_tickers(settings, client, tenant_id)
    subscribers = [
        Subscriber(handle.id, ticker_events(plan_for(index)))
        for index, handle in enumerate(handles)
        for _ in range(PER_OPERATION)
    ]
    connector = aiohttp.TCPConnector(limit=0)
    # A stream is quiet for at most a tick between events; a read that waits far longer
    # than that is a stuck stream.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        before = await scrape(session, api_url)
        opening = Opening(len(subscribers))
        connecting = time.monotonic()
        tasks = [
            asyncio.create_task(
                _follow(
                    session, f"{api_url}/v1/operations/{s.operation_id}/events", token, s, opening
                )
            )
            for s in subscribers
        ]
        try:
            await asyncio.wait_for(opening.all_open.wait(), CONNECT_BUDGET_SECONDS)
            part.connect_seconds = time.monotonic() - connecting
            connected = await scrape(session, api_url)
            meter.start_sampling()
            try:
                with Span(meter) as span:
                    began = time.monotonic()
                    await asyncio.gather(*(h.signal(GO_SIGNAL) for h in handles))
                    yardstick = asyncio.create_task(_query_round_trips(handles, part))
                    finished, _ = await asyncio.wait(tasks, timeout=STREAM_BUDGET_SECONDS)
                    part.streaming_seconds = time.monotonic() - began
                    yardstick.cancel()
            finally:
                await meter.stop_sampling()
            after = await scrape(session, api_url)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    part.cpu = span.result
    api = next(w for w in meter.watched if w.name == "api")
    part.api_rss = Rss(api.rss_first, api.rss_peak, api.rss_last)
    part.connect_rpcs = _rpcs(connected, before)
    part.stream_rpcs = _rpcs(after, connected)
    unfinished = len(tasks) - len(finished)
    if unfinished:
        part.failures[f"still open after {STREAM_BUDGET_SECONDS:.0f} s"] += unfinished
    _collect(part, subscribers, opening.seconds)


async def measure_unwatched(
    settings: Settings, client: Client, tenant_id: str, meter: Meter, part: SsePart
) -> None:
    """The control: the same operations with nobody following them. What the workflows
    cost on their own, and how long they take when nothing else competes."""
    handles = await _start_tickers(settings, client, tenant_id)
    with Span(meter) as span:
        began = time.monotonic()
        await asyncio.gather(*(h.signal(GO_SIGNAL) for h in handles))
        await asyncio.wait_for(
            asyncio.gather(*(h.result() for h in handles)), STREAM_BUDGET_SECONDS
        )
        part.unwatched_seconds = time.monotonic() - began
    part.unwatched_cpu = span.result


async def _start_tickers(
    settings: Settings, client: Client, tenant_id: str
) -> list[WorkflowHandle[int, int]]:
    """The operations, started and waiting for ``go``; the tenant's, as the API requires."""
    tag = uuid.uuid4().hex[:6]
    handles: list[WorkflowHandle[int, int]] = []
    for index in range(OPERATIONS):
        handle: WorkflowHandle[int, int] = await client.start_workflow(
            TICKER_WORKFLOW,
            plan_for(index),
            id=f"bench-sse-{tag}-{index:02d}",
            task_queue=settings.task_queue(TASK_QUEUE),
            search_attributes=search_attributes(tenant_id, uuid.uuid4().hex),
            result_type=int,
        )
        handles.append(handle)
    return handles


async def _query_round_trips(handles: list[WorkflowHandle[int, int]], part: SsePart) -> None:
    """Every ``QUERY_EVERY`` s, one progress query to the next ticker, as the watches ask
    it (only the events after the last one they have), timed: the floor of the delay."""
    for index in itertools.count():
        handle = handles[index % len(handles)]
        began = time.perf_counter()
        try:
            await handle.query(
                PROGRESS_QUERY, ProgressQuery(_NO_EVENTS), result_type=ProgressSnapshot
            )
        except (RPCError, WorkflowQueryFailedError) as err:
            part.query.fail(type(err).__name__)
        else:
            part.query.add(time.perf_counter() - began)
        await asyncio.sleep(QUERY_EVERY)


def _rpcs(after: Samples, before: Samples) -> dict[str, float]:
    counts: dict[str, float] = {}
    for rpc in RPCS:
        counts[rpc] = delta(after, before, "temporal_request_total", operation=rpc)
        long_polls = delta(after, before, "temporal_long_request_total", operation=rpc)
        if long_polls:
            counts[f"{rpc} (long poll)"] = long_polls
    return counts


def _collect(part: SsePart, subscribers: list[Subscriber], opened: list[float]) -> None:
    part.connected = len(opened)
    for seconds in opened:
        part.connect.add(seconds)
    # Closing operations make the watches replay them on the worker (the last query): the
    # delays before the first close and after it are told apart.
    first_close = min((s.closed_at for s in subscribers if s.closed_at is not None), default=0.0)
    for s in subscribers:
        part.expected += s.expected + 1
        part.received += s.received
        part.duplicates += s.duplicates
        part.out_of_order += s.out_of_order
        part.missing += s.missing
        if s.final and s.final_id != s.expected + 1:
            part.short_final += 1
        if s.failure is not None:
            part.failures[s.failure] += 1
        elif not s.final:
            part.failures["ended without the final event"] += 1
        for at, seconds in s.delays:
            (part.delay_running if at < first_close else part.delay_closing).add(seconds)
            part.delay.add(seconds)
        if s.final_delay is not None:
            part.final_delay.add(s.final_delay)
