"""Turning a derived state into a status patch, and telling when the phase changed.

The patch goes to ``patch.status``; kopf sends it to the ``/status`` subresource because
both CRDs declare one. Fields that no longer apply are set to ``None``, which a merge
patch removes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from adx_operator import temporal_actions
from adx_operator.conditions import Condition, merge
from adx_operator.context import OperatorContext
from adx_operator.observe import Failure, WorkflowView


def common_status(
    previous: Mapping[str, Any],
    *,
    phase: str,
    generation: int,
    workflow: WorkflowView | None,
    failure: Failure | None,
    conditions: tuple[Condition, ...],
    now: datetime | None = None,
) -> dict[str, Any]:
    return {
        "phase": phase,
        "observedGeneration": generation,
        "workflowId": workflow.workflow_id if workflow else previous.get("workflowId"),
        "runId": (workflow.run_id if workflow else None) or previous.get("runId"),
        "failure": _failure(failure),
        "conditions": merge(
            _list(previous.get("conditions")), conditions, generation, now or datetime.now(UTC)
        ),
    }


def _failure(failure: Failure | None) -> dict[str, str] | None:
    if failure is None:
        return None
    return {"step": failure.step, "reason": failure.reason, "message": failure.message[:4096]}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def changes(previous: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """Only what differs: an unchanged status writes nothing (no request, no watch event)."""
    diff: dict[str, Any] = {}
    for key, value in wanted.items():
        if previous.get(key) != value and not (value is None and key not in previous):
            diff[key] = value
    return diff


def record_phase_change(
    body: kopf.Body, before: object, phase: str, failure: Failure | None, warning: bool
) -> None:
    """A Kubernetes Event when the phase changes, with the failure when there is one."""
    if before == phase:
        return
    message = (
        f"{failure.step} failed ({failure.reason}): {failure.message}"
        if failure
        else f"{before or 'New'} -> {phase}"
    )
    kopf.event(body, type="Warning" if warning else "Normal", reason=phase, message=message[:1024])


def remember(
    memo: kopf.Memo,
    settled: bool,
    generation: object,
    written: Mapping[str, Any],
    in_flight: bool = False,
) -> None:
    # The run the timer may wait on before its next look (see wait_for_close).
    run = (written.get("workflowId"), written.get("runId"))
    memo["in_flight"] = run if in_flight and all(run) else None
    memo["settled"] = settled
    memo["settled_generation"] = generation
    memo["written"] = dict(written)
    memo["checked_at"] = time.monotonic()


def is_settled(
    memo: kopf.Memo, generation: object, status: Mapping[str, Any], resync_seconds: float
) -> bool:
    """A settled resource (nothing to do at its generation) is looked at only every
    ``resync_seconds``, to notice drift; one with work in flight, at every tick.

    Settled also needs the stored status to be the one the last look wrote. Handlers of
    one resource can overlap (the create handler and the timer, a spec change), and kopf
    merge-patches status without a resourceVersion: a status computed from an older look
    can land after a newer one. The next tick then sees it and looks again."""
    if not memo.get("settled") or memo.get("settled_generation") != generation:
        return False
    if not _shows(status, memo.get("written") or {}):
        return False
    return time.monotonic() - float(memo.get("checked_at", 0.0)) < resync_seconds


async def time_to_look(
    ctx: OperatorContext, memo: kopf.Memo, meta: kopf.Meta, status: Mapping[str, Any]
) -> bool:
    """For a mirror timer: ``False`` for a resource on its way out (the delete handler has
    it) or settled; otherwise, with a run in flight, first wait up to a poll for it to close,
    so that its end shows at this look."""
    if meta.get("deletionTimestamp"):
        return False
    if is_settled(memo, meta.get("generation"), status, ctx.pacing.resync_seconds):
        return False
    in_flight = memo.get("in_flight")
    if in_flight:
        workflow_id, run_id = in_flight
        await temporal_actions.wait_for_close(
            ctx.client, workflow_id, run_id, ctx.pacing.poll_seconds
        )
    return True


def _shows(status: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    return all(
        (key not in status) if value is None else status.get(key) == value
        for key, value in written.items()
    )
