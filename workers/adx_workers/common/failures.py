"""How a saga workflow reads the error that stopped it. Workflow code: sandbox-safe."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError


def is_cancellation(err: BaseException) -> bool:
    """A cancel request may surface as the step's own cancellation or, when the step in
    flight ended otherwise (a timeout) while the cancel waited for it, as that failure."""
    return (
        workflow.cancellation_reason() is not None
        or isinstance(err, asyncio.CancelledError)
        or (isinstance(err, ActivityError) and isinstance(err.cause, CancelledError))
    )


def describe(err: BaseException) -> str:
    """The cause in one line, as the failure records it: never a traceback."""
    if is_cancellation(err):
        return "cancelled"
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    return str(cause) or type(cause).__name__
