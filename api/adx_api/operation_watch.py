"""One upstream watch per operation, shared by every SSE subscriber in this API process.

A thousand browsers following fifty operations must not each poll Temporal. The first
subscriber to an operation starts its watch; later ones attach to it and read from its
event log, each from its own ``Last-Event-ID``.

The watch follows the workflow's history with a long poll (``wait_new_event``): Temporal
pushes each new history event to it. Every progress event a workflow records is also in
its memo (``ProgressTracker`` upserts it), so it arrives in that history as a
``WorkflowPropertiesModified`` event, and the watch takes it from there: no query, no
worker, and a workflow that has closed is read the same way. Executions that started
before the memo (no event in it) are followed through the ``progress`` query instead,
asked once each time the workflow completes a task, the only moment its progress can
change; a slow fallback covers an unanswered query. When the execution closes, the watch
appends the final ``completed``, ``failed`` or ``cancelled`` event, whose id is one past
the last progress event.

Event ids are the workflow's own sequence numbers, so every API process (and every
reconnect) numbers the same event the same way: ``Last-Event-ID`` resumes exactly.
Watches without subscribers linger briefly, so that a reconnect finds them, then stop.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.service import RPCError

from adx_api.operations import TERMINAL, Operations, owner_of, status_of
from adx_api.problems import ProblemError
from adx_core.auth import Claims
from adx_core.contracts.progress import (
    PROGRESS_MEMO_KEY,
    EventKind,
    ProgressEvent,
    ProgressSnapshot,
)
from adx_core.logging import get_logger

log = get_logger(__name__)

# How long a watch nobody follows is kept, so a reconnecting client resumes from memory.
LINGER_SECONDS = 10.0
# Backoff after an upstream error (Temporal away): the watch keeps trying.
_RETRY_SECONDS = 1.0
# The progress query of a running workflow is answered from the worker's cache in
# milliseconds; past this, the next nudge or the fallback poll asks again.
_QUERY_SECONDS = 1.0
# After the close, without events in the memo: how long the follower may take to read the
# rest of the history, and the final query (a replay of the whole history on a worker).
_FINAL_READ_SECONDS = 10.0
_FINAL_QUERY_SECONDS = 5.0
_FINAL_ATTEMPTS = 3

_FINAL_EVENT = {"succeeded": "completed", "failed": "failed", "cancelled": "cancelled"}
_CLOSED = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    }
)


@dataclass(frozen=True)
class SseEvent:
    id: int
    kind: str
    # Encoded once, sent to every subscriber as is.
    data: str


class OperationWatch:
    """The event log of one operation, kept up to date while anyone follows it."""

    def __init__(
        self,
        operations: Operations,
        handle: WorkflowHandle[Any, Any],
        tenant_id: str,
        poll: float,
        converter: DataConverter,
        *,
        closed: bool = False,
    ) -> None:
        self.operation_id = handle.id
        self.tenant_id = tenant_id
        self._operations = operations
        self._handle = handle
        self._poll = poll
        self._events: list[SseEvent] = []
        self._ids: list[int] = []
        self._last_seq = 0
        self._started: dict[str, datetime] = {}
        self.final: SseEvent | None = None
        self._changed = asyncio.Event()
        self._nudge = asyncio.Event()
        # Known closed from the start: the first pass collects everything and finishes.
        self._closed = closed
        # Set by the follower once it has read the history up to the close event.
        self._read_to_close = False
        # Set once the history shows an event in the memo: then the query is not needed.
        self._memo_mode = False
        self._converter = converter
        self._latest: ProgressEvent | None = None
        self._failed: list[ProgressEvent] = []
        self._synced = asyncio.Event()
        self.subscribers = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch {self.operation_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def signal(self) -> asyncio.Event:
        """Set at the next change. Take it *before* reading, so no change is missed."""
        return self._changed

    def events_after(self, after: int) -> list[SseEvent]:
        return self._events[bisect.bisect_right(self._ids, after) :]

    @property
    def finished(self) -> bool:
        return self.final is not None

    async def synced(self, within: float) -> None:
        """Wait (at most ``within`` seconds) until the watch has caught up with the
        workflow once: for a closed workflow, until its final event is there."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), within)

    # The upstream side.

    async def _run(self) -> None:
        follower = asyncio.create_task(self._follow_history())
        final_attempts = 0
        queried = False
        try:
            while True:
                try:
                    if self._closed:
                        # The follower reads the history up to the close before it stops,
                        # so in memo mode every event is in hand by then.
                        await asyncio.wait({follower}, timeout=_FINAL_READ_SECONDS)
                        if not self._memo_mode and not await self._refresh(_FINAL_QUERY_SECONDS):
                            # A closed workflow's query replays its history on a worker:
                            # give it time, and do not send the final event over a gap.
                            final_attempts += 1
                            if final_attempts < _FINAL_ATTEMPTS:
                                continue
                            log.warning("operation watch: final progress unanswered")
                        await self._finish()
                        return
                    # Nothing is asked before the history has been read: it either holds
                    # the events (the memo) or the task completions that call for a query.
                    answered = self._memo_mode or not queried or await self._refresh(_QUERY_SECONDS)
                    queried = True
                    self._synced.set()
                except Exception as err:  # Temporal away, or a bug: keep the stream alive
                    log.warning("operation watch: upstream error", error=type(err).__name__)
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                # Sleep until the workflow moves. Without a nudge, only an unanswered query
                # (no worker replied in time) or a dead follower is a reason to look again.
                while not await self._nudged(self._poll) and answered:
                    if follower.done():
                        follower = asyncio.create_task(self._follow_history())
                        break
        finally:
            follower.cancel()

    async def _nudged(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._nudge.wait(), seconds)
        except TimeoutError:
            return False
        self._nudge.clear()
        return True

    async def _follow_history(self) -> None:
        """Read the workflow's history as it grows: take the progress events it carries
        in its memo, wake the query when it carries none, and note the close."""
        while not self._read_to_close:
            try:
                history = self._handle.fetch_history_events(wait_new_event=True, skip_archival=True)
                async for event in history:
                    kind = event.event_type
                    if kind == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
                        await self._take_memo(event)
                    elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                        if not self._memo_mode:
                            self._nudge.set()
                    elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                        self._nudge.set()
                    elif kind in _CLOSED:
                        self._closed = self._read_to_close = True
                        self._nudge.set()
            except RPCError:
                await asyncio.sleep(_RETRY_SECONDS)
                self._nudge.set()  # events may have been missed while it was down
            # A run that continued as new ends its history; follow the new run.

    async def _take_memo(self, event: HistoryEvent) -> None:
        fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
        if PROGRESS_MEMO_KEY not in fields:
            return
        (progress,) = await self._converter.decode([fields[PROGRESS_MEMO_KEY]], [ProgressEvent])
        self._memo_mode = True
        if progress.seq > self._last_seq:
            self._add(progress)
            self._last_seq = progress.seq
            self._announce()

    async def _refresh(self, within: float) -> bool:
        """Append the events after the last one; ``False`` if the query went unanswered."""
        snapshot = await self._operations.progress(self._handle, self._last_seq, within)
        if snapshot is None:
            return False
        fresh = [event for event in snapshot.events if event.seq > self._last_seq]
        for event in fresh:
            self._add(event)
        self._last_seq = max(self._last_seq, snapshot.last_seq)
        if fresh:
            self._announce()
        return True

    async def _finish(self) -> None:
        description = await self._handle.describe()
        known = self._known_progress() if self._memo_mode else None
        operation = await self._operations.build(self._handle, description, known_progress=known)
        kind = _FINAL_EVENT.get(operation.status, "failed")
        self.final = SseEvent(self._last_seq + 1, kind, json.dumps(operation.to_json()))
        self._events.append(self.final)
        self._ids.append(self.final.id)
        self._synced.set()
        self._announce()

    def _known_progress(self) -> ProgressSnapshot | None:
        """What the final operation needs of the progress, from the events in hand: the
        latest values and the failed steps."""
        if self._latest is None:
            return None
        return ProgressSnapshot(
            step=self._latest.step,
            percent=self._latest.percent,
            counters=self._latest.counters,
            last_seq=self._last_seq,
            events=self._failed,
        )

    def _add(self, event: ProgressEvent) -> None:
        self._latest = event
        if event.kind is EventKind.STEP_FAILED:
            self._failed.append(event)
        self._append(event.seq, *self._encode(event))

    def _append(self, seq: int, kind: str, data: str) -> None:
        self._events.append(SseEvent(seq, kind, data))
        self._ids.append(seq)

    def _announce(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _encode(self, event: ProgressEvent) -> tuple[str, str]:
        if event.kind is EventKind.PROGRESS:
            return "progress", json.dumps(
                {
                    "phase": event.kind.value,
                    "step": event.step,
                    "percent": event.percent,
                    "counters": event.counters,
                    "at": event.at.isoformat(),
                }
            )
        duration_ms: int | None = None
        if event.kind is EventKind.STEP_STARTED:
            self._started[event.step] = event.at
        elif event.kind in (EventKind.STEP_FINISHED, EventKind.STEP_FAILED):
            began = self._started.get(event.step)
            if began is not None:
                duration_ms = round((event.at - began).total_seconds() * 1000)
        return "step", json.dumps(
            {
                "step": event.step,
                # The workflow's own event kind: step_started, step_finished, step_failed,
                # compensating or compensation_failed.
                "phase": event.kind.value,
                "percent": event.percent,
                "counters": event.counters,
                "detail": event.detail,
                "at": event.at.isoformat(),
                "duration_ms": duration_ms,
            }
        )


class OperationWatches:
    """Every watch of this process, by operation id."""

    def __init__(self, client: Client, poll_seconds: float) -> None:
        self._operations = Operations(client)
        self._converter = client.data_converter
        self._poll = poll_seconds
        self._watches: dict[str, OperationWatch] = {}
        self._starting: dict[str, asyncio.Future[OperationWatch | None]] = {}
        self._reapers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._watches)

    async def watch(self, operation_id: str, claims: Claims) -> OperationWatch:
        """The operation's watch, started if needed. Another tenant's operation is a 404,
        as on every operations route; an existing watch answers that without an RPC."""
        while True:
            watch = self._watches.get(operation_id) or await self._start(operation_id, claims)
            if watch is None:
                continue  # another tenant's caller looked it up first: look again
            if watch.tenant_id != claims.tenant_id:
                raise ProblemError(404, "not-found", "no such operation")
            return watch

    async def _start(self, operation_id: str, claims: Claims) -> OperationWatch | None:
        """Start the watch, unless the operation is not the caller's: then nothing is
        started, and ``None`` tells the callers who waited on this lookup to try again
        (a stranger probing an id must not make the owner's request fail)."""
        pending = self._starting.get(operation_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[OperationWatch | None] = asyncio.get_running_loop().create_future()
        self._starting[operation_id] = future
        watch: OperationWatch | None = None
        try:
            handle, description = await self._operations.describe_any(operation_id)
            tenant = owner_of(description)
            if tenant == claims.tenant_id:
                closed = status_of(description) in TERMINAL
                watch = OperationWatch(
                    self._operations, handle, tenant, self._poll, self._converter, closed=closed
                )
                watch.start()
                self._watches[operation_id] = watch
                self._schedule_reap(watch)  # stops it if its first subscriber never attaches
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        else:
            future.set_result(watch)
        finally:
            del self._starting[operation_id]
        if watch is None:
            raise ProblemError(404, "not-found", "no such operation")
        return watch

    @contextlib.asynccontextmanager
    async def subscribed(self, watch: OperationWatch) -> AsyncIterator[OperationWatch]:
        watch.subscribers += 1
        reaper = self._reapers.pop(watch.operation_id, None)
        if reaper is not None:
            reaper.cancel()
        try:
            yield watch
        finally:
            watch.subscribers -= 1
            if watch.subscribers == 0:
                self._schedule_reap(watch)

    def _schedule_reap(self, watch: OperationWatch) -> None:
        loop = asyncio.get_running_loop()
        old = self._reapers.pop(watch.operation_id, None)
        if old is not None:
            old.cancel()
        self._reapers[watch.operation_id] = loop.call_later(
            LINGER_SECONDS, lambda: asyncio.ensure_future(self._reap(watch))
        )

    async def _reap(self, watch: OperationWatch) -> None:
        self._reapers.pop(watch.operation_id, None)
        if watch.subscribers == 0 and self._watches.get(watch.operation_id) is watch:
            del self._watches[watch.operation_id]
            await watch.stop()

    async def close(self) -> None:
        for reaper in self._reapers.values():
            reaper.cancel()
        self._reapers.clear()
        watches, self._watches = list(self._watches.values()), {}
        await asyncio.gather(*(watch.stop() for watch in watches))
