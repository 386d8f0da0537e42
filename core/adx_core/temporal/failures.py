"""Why a workflow ended badly, in words a person can act on: the root cause of a
``WorkflowFailureError`` with the wrappers (activity, child workflow) taken off, its kind
and its message, never a stack trace. The API's operations and the operator's resource
status both report failures this way."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    TerminatedError,
)
from temporalio.exceptions import (
    TimeoutError as TemporalTimeoutError,
)


@dataclass(frozen=True)
class FailureSummary:
    # A stable, machine-readable kind: "cancelled", "terminated", "timeout", the
    # ApplicationError's type (such as "SlugTaken"), or "workflow-failed".
    kind: str
    title: str
    detail: str


def summarize(cause: BaseException) -> FailureSummary:
    root = cause
    while isinstance(root, ActivityError | ChildWorkflowError) and root.cause is not None:
        root = root.cause
    if isinstance(root, CancelledError):
        kind, title = "cancelled", "The operation was cancelled"
    elif isinstance(root, TerminatedError):
        kind, title = "terminated", "The operation was terminated"
    elif isinstance(root, TemporalTimeoutError):
        kind, title = "timeout", "A step timed out"
    elif isinstance(root, ApplicationError):
        kind, title = root.type or "application-error", "A step failed"
    else:
        kind, title = "workflow-failed", "The operation failed"
    detail = root.message if isinstance(root, FailureError) else str(root)
    return FailureSummary(kind, title, detail)
