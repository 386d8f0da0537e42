"""What Temporal says about one workflow, reduced to what a resource's status shows.

Everything here reads; nothing starts, signals or cancels. The planning functions take a
``WorkflowView`` and never see the Temporal client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHistoryEventFilterType,
)
from temporalio.service import RPCError, RPCStatusCode

from adx_core.contracts.progress import PROGRESS_MEMO_KEY, EventKind, ProgressEvent
from adx_core.temporal.failures import summarize
from adx_operator.naming import MEMO_GENERATION, MEMO_SPEC, MEMO_UID


class RunState(StrEnum):
    ABSENT = "absent"  # Temporal has never seen this workflow id
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed, terminated or timed out
    CANCELLED = "cancelled"


_STATES = {
    WorkflowExecutionStatus.RUNNING: RunState.RUNNING,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: RunState.RUNNING,
    WorkflowExecutionStatus.COMPLETED: RunState.SUCCEEDED,
    WorkflowExecutionStatus.FAILED: RunState.FAILED,
    WorkflowExecutionStatus.TERMINATED: RunState.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: RunState.FAILED,
    WorkflowExecutionStatus.CANCELED: RunState.CANCELLED,
}


@dataclass(frozen=True)
class Failure:
    step: str
    reason: str  # a stable kind: "SlugTaken", "timeout", "terminated", ...
    message: str


@dataclass(frozen=True)
class WorkflowView:
    workflow_id: str
    state: RunState
    run_id: str | None = None
    step: str = ""
    percent: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    failure: Failure | None = None
    # The completed workflow's result, as JSON (the dataclass's fields).
    result: dict[str, Any] | None = None
    # Who started it, if the operator did: the resource's uid and generation (memo).
    uid: str | None = None
    generation: int | None = None
    # What the operator asked of this run, as it recorded it in the memo.
    requested: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        return self.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


def absent(workflow_id: str) -> WorkflowView:
    return WorkflowView(workflow_id, RunState.ABSENT)


async def view(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowView:
    """The workflow as it is now: its latest run, or ``run_id``'s when given."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return absent(workflow_id)
        raise
    state = _STATES.get(description.status or WorkflowExecutionStatus.RUNNING, RunState.RUNNING)
    memo = await description.memo()
    event = _latest_event(memo.get(PROGRESS_MEMO_KEY))
    # The step that failed, not the clean-up step the workflow ended in.
    step = event.step if event else ""
    failed_step = event.step if event and event.kind == EventKind.STEP_FAILED else None
    result: dict[str, Any] | None = None
    failure: Failure | None = None
    if state is RunState.SUCCEEDED:
        raw = await handle.result()
        result = raw if isinstance(raw, dict) else None
    elif state in (RunState.FAILED, RunState.CANCELLED):
        if failed_step is None and event is not None:
            failed_step = await _failed_step(client, handle)
        if description.status == WorkflowExecutionStatus.TERMINATED:
            failure = await _termination_of(handle, failed_step or step or "unknown")
        else:
            failure = await _failure_of(handle, failed_step or step or "unknown")
    generation = memo.get(MEMO_GENERATION)
    return WorkflowView(
        workflow_id=workflow_id,
        state=state,
        run_id=description.run_id,
        step=step,
        percent=100 if state is RunState.SUCCEEDED else (event.percent if event else 0),
        counters=dict(event.counters) if event else {},
        failure=failure,
        result=result,
        uid=memo.get(MEMO_UID) if isinstance(memo.get(MEMO_UID), str) else None,
        generation=generation if isinstance(generation, int) else None,
        requested=memo.get(MEMO_SPEC) if isinstance(memo.get(MEMO_SPEC), dict) else None,
    )


def _latest_event(raw: Any) -> ProgressEvent | None:
    # The memo holds the newest ProgressEvent as JSON; a workflow started before events
    # went to the memo has none, and then the Step is unknown here (status says "").
    if not isinstance(raw, dict):
        return None
    try:
        return ProgressEvent(
            seq=int(raw["seq"]),
            kind=EventKind(raw["kind"]),
            step=str(raw["step"]),
            percent=int(raw["percent"]),
            at=raw["at"],
            counters={str(k): int(v) for k, v in (raw.get("counters") or {}).items()},
            detail=raw.get("detail"),
        )
    except (KeyError, TypeError, ValueError):
        return None


async def _failed_step(client: Client, handle: Any) -> str | None:
    """The step whose failure ended the run. The memo holds only the newest progress
    event, which after a failure is usually the saga's clean-up; every earlier one is in
    the history, one memo upsert each. Read only for a run that ended badly, whose history
    no longer changes."""
    step: str | None = None
    async for event in handle.fetch_history_events():
        if not event.HasField("workflow_properties_modified_event_attributes"):
            continue
        fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
        if PROGRESS_MEMO_KEY not in fields:
            continue
        (progress,) = await client.data_converter.decode(
            [fields[PROGRESS_MEMO_KEY]], [ProgressEvent]
        )
        if progress.kind == EventKind.STEP_FAILED:
            step = progress.step
    return step


async def _termination_of(handle: Any, step: str) -> Failure:
    """A terminate's reason is in the closing history event (the failure the SDK raises
    for it carries none): what an administrator wrote, worth showing."""
    reason = ""
    async for event in handle.fetch_history_events(
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
    ):
        reason = event.workflow_execution_terminated_event_attributes.reason
    return Failure(step=step, reason="terminated", message=reason or "terminated")


async def _failure_of(handle: Any, step: str) -> Failure:
    try:
        await handle.result(follow_runs=False)
    except WorkflowFailureError as failure:
        summary = summarize(failure.cause)
        return Failure(step=step, reason=summary.kind, message=summary.detail)
    return Failure(step=step, reason="unknown", message="the workflow did not succeed")
