"""Compensation as a saga: each completed step pushes its undo; a failure runs the undos in
reverse. The undos are activities too, so they are durable and retried by Temporal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio import workflow

Undo = Callable[[], Awaitable[object]]


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
