"""Progress reporting inside a workflow: a step name, a percent, counters and an event log.

The log is workflow state, so its sequence numbers are deterministic; the API serves it
through the ``progress`` query and as resumable SSE. Each event is also upserted into the
memo (``adx.progress``), which puts it into the history, where the API's SSE watch reads it
without asking a worker. The current step is also upserted as
the ``Step`` search attribute, so the Temporal UI and visibility queries show it.
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import workflow

from adx_core.contracts import search
from adx_core.contracts.progress import (
    PROGRESS_MEMO_KEY,
    PROGRESS_MEMO_PATCH,
    EventKind,
    ProgressEvent,
    ProgressSnapshot,
)

# Bounds the query answer and workflow memory; long-running workflows continue-as-new
# well before this.
MAX_EVENTS = 1000


class ProgressTracker:
    def __init__(self, plan: Mapping[str, int], *, last_seq: int = 0, percent: int = 0) -> None:
        """``plan`` maps each step to the percent reached when it finishes. A run continued
        as new passes the ``last_seq`` and ``percent`` it reached, so that event numbers
        keep growing and an SSE client resuming with Last-Event-ID loses nothing."""
        self._plan = dict(plan)
        self._step = "pending"
        self._percent = percent
        self._counters: dict[str, int] = {}
        self._events: list[ProgressEvent] = []
        self._seq = last_seq

    @property
    def step(self) -> str:
        return self._step

    def started(self, step: str) -> None:
        self._step = step
        workflow.upsert_search_attributes([search.STEP.value_set(step)])
        self._emit(EventKind.STEP_STARTED, step)

    def finished(self, step: str) -> None:
        self._percent = max(self._percent, self._plan.get(step, self._percent))
        self._emit(EventKind.STEP_FINISHED, step)

    def failed(self, step: str, detail: str) -> None:
        self._emit(EventKind.STEP_FAILED, step, detail)

    def compensation_failed(self, detail: str) -> None:
        """An undo could not finish: what is left behind needs an operator."""
        self._emit(EventKind.COMPENSATION_FAILED, self._step, detail)

    def compensating(self, step: str) -> None:
        self._step = f"compensating:{step}"
        workflow.upsert_search_attributes([search.STEP.value_set(self._step)])
        self._emit(EventKind.COMPENSATING, step)

    def count(self, name: str, value: int) -> None:
        self._counters[name] = value

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def percent(self) -> int:
        return self._percent

    def advance(self, percent: int, counters: Mapping[str, int]) -> None:
        """Inside a long step: new counters and a percent that never goes back."""
        self._counters.update(counters)
        self._percent = max(self._percent, min(percent, 99))
        workflow.upsert_search_attributes([search.PERCENT.value_set(self._percent)])
        self._emit(EventKind.PROGRESS, self._step)

    def done(self, step: str = "completed", *, complete: bool = True) -> None:
        """The final step; ``complete=False`` (a rollback) keeps the percent reached."""
        self._step = step
        if complete:
            self._percent = 100
        workflow.upsert_search_attributes([search.STEP.value_set(step)])

    def snapshot(self, after_seq: int = 0) -> ProgressSnapshot:
        return ProgressSnapshot(
            step=self._step,
            percent=self._percent,
            counters=dict(self._counters),
            last_seq=self._seq,
            events=[event for event in self._events if event.seq > after_seq],
        )

    def _emit(self, kind: EventKind, step: str, detail: str | None = None) -> None:
        self._seq += 1
        self._events.append(
            ProgressEvent(
                seq=self._seq,
                kind=kind,
                step=step,
                percent=self._percent,
                at=workflow.now(),
                counters=dict(self._counters),
                detail=detail,
            )
        )
        if len(self._events) > MAX_EVENTS:
            del self._events[0]
        if workflow.patched(PROGRESS_MEMO_PATCH):
            workflow.upsert_memo({PROGRESS_MEMO_KEY: self._events[-1]})
