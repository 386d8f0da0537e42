"""How a workflow reports its progress: a snapshot plus an ordered event log.

Each event carries a sequence number assigned by the workflow itself. The numbers come
from workflow state, so they are the same on every replay and every API process. That is
what lets an SSE client resume with ``Last-Event-ID`` without loss or duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

PROGRESS_QUERY = "progress"
# Each event is also written to the workflow's memo under this key as it happens, so it
# lands in the history: the API's watch reads it from the history long poll it already
# makes, with no query and no worker involved. Executions started before this (without
# the patch below) are still followed through the query.
PROGRESS_MEMO_KEY = "adx.progress"
PROGRESS_MEMO_PATCH = "adx-progress-in-memo"


class EventKind(StrEnum):
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    STEP_FAILED = "step_failed"
    COMPENSATING = "compensating"
    COMPENSATION_FAILED = "compensation_failed"
    # Counters moved inside a long step (a migration's batches).
    PROGRESS = "progress"


@dataclass(frozen=True)
class ProgressEvent:
    seq: int
    kind: EventKind
    step: str
    percent: int
    at: datetime
    counters: dict[str, int] = field(default_factory=dict)
    detail: str | None = None


@dataclass(frozen=True)
class ProgressQuery:
    """Ask for the events after ``after_seq`` (0 for all of them)."""

    after_seq: int = 0


@dataclass(frozen=True)
class ProgressSnapshot:
    step: str
    percent: int
    counters: dict[str, int]
    last_seq: int
    events: list[ProgressEvent]
