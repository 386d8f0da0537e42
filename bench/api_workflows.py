"""The bench's own workflows for the API benchmarks (issue 6), run by bench.api_server.

- ``bench_group_workflow`` creates a group as ``POST /v1/groups`` does (one INSERT and its
  audit row), through one activity: a normal one, or a local one that runs inside the
  workflow task. The same operation done directly and as a workflow shows what the
  workflow path adds.
- ``bench_ticker_workflow`` reports progress steadily, as a long operation does: after a
  ``go`` signal, a step starts and finishes, or its counters move, every ``tick_seconds``.
  It is what the SSE subscribers follow. The dev server's timers last a second at least (a
  0.5 s sleep takes one), so the first pause, which spreads the tickers over a tick, is a
  small activity that only waits; the ticks are timers.

Imported inside the workflow sandbox: nothing here may import the database code (the
activity lives in bench.api_activities and is called by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_workers.common.progress import ProgressTracker

TASK_QUEUE = "bench-api"
GROUP_WORKFLOW = "bench_group_workflow"
TICKER_WORKFLOW = "bench_ticker_workflow"
CREATE_GROUP_ACTIVITY = "bench_create_group_activity"
PAUSE_ACTIVITY = "bench_pause_activity"
GO_SIGNAL = "go"

_ACTIVITY_TIMEOUT = timedelta(seconds=10)
# A ticker nobody releases gives up, so a crashed bench leaves nothing running for long.
_GO_TIMEOUT = timedelta(minutes=3)


@dataclass(frozen=True)
class GroupRequest:
    tenant_id: str
    name: str
    actor_id: str
    correlation_id: str
    local: bool


@dataclass(frozen=True)
class GroupResult:
    """What ``POST /v1/groups`` answers."""

    id: str
    name: str
    members: list[str]
    created_at: str


@dataclass(frozen=True)
class TickerPlan:
    ticks: int
    ticks_per_step: int
    tick_seconds: float
    # Spreads the tickers over a tick, so that fifty of them do not all wake at once.
    offset_seconds: float


def step_name(index: int) -> str:
    return f"step-{index + 1:02d}"


def ticker_events(plan: TickerPlan) -> int:
    """How many step and progress events a ticker with ``plan`` emits (the final
    ``completed`` event of the stream not included)."""
    steps = -(-plan.ticks // plan.ticks_per_step)
    # Each step starts and finishes; every other tick moves the counters.
    return 2 * steps + (plan.ticks - steps)


@workflow.defn(name=GROUP_WORKFLOW)
class BenchGroupWorkflow:
    @workflow.run
    async def run(self, request: GroupRequest) -> GroupResult:
        result: GroupResult
        if request.local:
            result = await workflow.execute_local_activity(
                CREATE_GROUP_ACTIVITY,
                request,
                result_type=GroupResult,
                start_to_close_timeout=_ACTIVITY_TIMEOUT,
            )
        else:
            result = await workflow.execute_activity(
                CREATE_GROUP_ACTIVITY,
                request,
                result_type=GroupResult,
                start_to_close_timeout=_ACTIVITY_TIMEOUT,
            )
        return result


@workflow.defn(name=TICKER_WORKFLOW)
class BenchTickerWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker({})
        self._go = False

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.signal(name=GO_SIGNAL)
    def go(self) -> None:
        self._go = True

    @workflow.run
    async def run(self, plan: TickerPlan) -> int:
        await workflow.wait_condition(lambda: self._go, timeout=_GO_TIMEOUT)
        if plan.offset_seconds > 0:
            await workflow.execute_activity(
                PAUSE_ACTIVITY, plan.offset_seconds, start_to_close_timeout=_ACTIVITY_TIMEOUT
            )
        steps = -(-plan.ticks // plan.ticks_per_step)
        for tick in range(plan.ticks):
            step, within = divmod(tick, plan.ticks_per_step)
            if within == 0:
                if step:
                    self._progress.finished(step_name(step - 1))
                self._progress.started(step_name(step))
            else:
                self._progress.advance(100 * tick // plan.ticks, {"ticks": tick})
            await workflow.sleep(plan.tick_seconds)
        self._progress.finished(step_name(steps - 1))
        self._progress.done()
        return self._progress.last_seq
