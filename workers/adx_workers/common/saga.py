"""Compensation as a saga: each completed step pushes its undo; a failure runs the undos in
reverse. The undos are activities too, so they are durable and retried by Temporal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from adx_workers.common.failures import describe
from adx_workers.common.progress import ProgressTracker

Undo = Callable[[], Awaitable[object]]
Result = TypeVar("Result")

# Undos must finish even when the service they clean up is flaky: no attempt limit, only
# the caller's deadline.
UNDO_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


async def run_undo(
    activity: str,
    arg: object,
    result_type: type[Result],
    *,
    attempt_timeout: timedelta,
    deadline: timedelta,
) -> Result:
    """An undo activity. It is a new activity, so it runs even when the workflow was
    cancelled (the cancel hit the step in flight, not what comes after it)."""
    result: Result = await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=attempt_timeout,
        schedule_to_close_timeout=deadline,
        retry_policy=UNDO_RETRY,
    )
    return result


@dataclass(frozen=True)
class _Compensation:
    step: str
    undo: Undo


class Saga:
    def __init__(self) -> None:
        self._compensations: list[_Compensation] = []

    def push(self, step: str, undo: Undo) -> None:
        self._compensations.append(_Compensation(step, undo))

    @property
    def steps(self) -> list[str]:
        return [c.step for c in self._compensations]

    async def compensate(self, on_step: Callable[[str], None] | None = None) -> list[str]:
        """Run every undo, newest first. One failed undo does not stop the others: the
        remaining cleanup still runs, and the first error is raised at the end."""
        undone: list[str] = []
        first_error: BaseException | None = None
        while self._compensations:
            compensation = self._compensations.pop()
            if on_step is not None:
                on_step(compensation.step)
            try:
                await compensation.undo()
                undone.append(compensation.step)
            except Exception as exc:
                workflow.logger.error(
                    "compensation failed", extra={"step": compensation.step, "error": str(exc)}
                )
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return undone

    async def roll_back(
        self,
        progress: ProgressTracker,
        step: str,
        err: BaseException,
        *,
        then: Undo | None = None,
    ) -> None:
        """``step`` failed with ``err`` (or the workflow was cancelled): record it, run every
        undo newest first and then ``then``, and end the progress in ``rolled_back``. An
        undo that fails is reported in the progress log, not raised: the operation failed
        because of ``err``, and what could not be cleaned up is there for operators."""
        progress.failed(step, describe(err))
        try:
            await self.compensate(progress.compensating)
            if then is not None:
                await then()
        except ActivityError as undo_error:
            progress.compensation_failed(describe(undo_error))
            workflow.logger.error("compensation incomplete", extra={"step": step})
        progress.done("rolled_back", complete=False)
