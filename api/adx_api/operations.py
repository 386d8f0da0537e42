"""Operations: a workflow execution seen through the API.

The operation id is the workflow id. Every lookup checks that the workflow's ``TenantId``
search attribute is the caller's tenant; another tenant's id is answered as not found, so
ids cannot be probed across tenants.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from adx_api.problems import TYPE_BASE, ProblemError
from adx_core.auth import Claims
from adx_core.contracts import search
from adx_core.contracts.progress import PROGRESS_QUERY, EventKind, ProgressQuery, ProgressSnapshot
from adx_core.temporal.failures import summarize

OPERATION_ID = re.compile(r"^[a-z][a-z0-9-]{2,80}$")
# A worker answers in milliseconds; past this, report the Step search attribute instead.
_QUERY_TIMEOUT = 1.0

_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
    WorkflowExecutionStatus.COMPLETED: "succeeded",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
}
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_UNKNOWN: Any = object()


@dataclass(frozen=True)
class Operation:
    id: str
    type: str
    status: str
    progress: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def started(cls, operation_id: str, workflow_type: str, at: datetime) -> Operation:
        return cls(
            id=operation_id,
            type=workflow_type,
            status="pending",
            progress={"step": "pending", "percent": 0, "counters": {}},
            result=None,
            error=None,
            created_at=at,
            updated_at=at,
        )

    def to_json(self, base_url: str = "") -> dict[str, Any]:
        href = f"{base_url}/v1/operations/{self.id}"
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "links": {
                "self": href,
                "events": f"{href}/events",
                "cancel": f"{href}/cancel",
                "result": f"{href}/result",
            },
        }


def search_attributes(owner_tenant_id: str, correlation_id: str) -> TypedSearchAttributes:
    return search.start_attributes(owner_tenant_id, correlation_id)


def owner_of(description: WorkflowExecution) -> str:
    """The tenant an operation belongs to (its TenantId search attribute)."""
    return description.typed_search_attributes.get(search.TENANT_ID) or ""


def status_of(description: WorkflowExecution) -> str:
    if description.status is None:
        return "pending"
    return _STATUS.get(description.status, "running")


def validate_id(operation_id: str) -> str:
    if not OPERATION_ID.match(operation_id):
        # Malformed ids are indistinguishable from unknown ones on purpose.
        raise ProblemError(404, "not-found", "no such operation")
    return operation_id


class Operations:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def describe(
        self, operation_id: str, claims: Claims
    ) -> tuple[WorkflowHandle[Any, Any], WorkflowExecutionDescription]:
        handle, description = await self.describe_any(operation_id)
        if owner_of(description) != claims.tenant_id:
            raise ProblemError(404, "not-found", "no such operation")
        return handle, description

    async def describe_any(
        self, operation_id: str
    ) -> tuple[WorkflowHandle[Any, Any], WorkflowExecutionDescription]:
        """The workflow behind an id, whoever owns it: the caller checks ``owner_of``."""
        handle = self._client.get_workflow_handle(validate_id(operation_id))
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ProblemError(404, "not-found", "no such operation") from None
            raise  # the problem middleware answers 503 with Retry-After
        return handle, description

    async def page(
        self, query: str, limit: int, page_token: bytes | None
    ) -> tuple[list[Operation], bytes | None]:
        """One page of a visibility query, each execution as an operation. Visibility holds
        status, step and percent; a result or an error needs ``get``."""
        executions = self._client.list_workflows(query, page_size=limit, next_page_token=page_token)
        await executions.fetch_next_page()
        return [summary_of(execution) for execution in executions.current_page or ()], (
            executions.next_page_token
        )

    async def get(self, operation_id: str, claims: Claims) -> Operation:
        handle, description = await self.describe(operation_id, claims)
        return await self.build(handle, description)

    async def build(
        self,
        handle: WorkflowHandle[Any, Any],
        description: WorkflowExecutionDescription,
        *,
        known_result: Any = _UNKNOWN,
        known_progress: ProgressSnapshot | None = None,
    ) -> Operation:
        """The operation as it is. ``known_result`` and ``known_progress``: what the caller
        already has, which saves asking Temporal (and, for a closed workflow, a worker's
        replay of its whole history) again."""
        status = status_of(description)
        snapshot = known_progress
        if snapshot is None and status != "succeeded":
            snapshot = await self.progress(handle, 0)
        step = (
            snapshot.step
            if snapshot
            else description.typed_search_attributes.get(search.STEP) or "pending"
        )
        if snapshot and status in ("failed", "cancelled"):
            # The step that failed, not the clean-up step the workflow ended in.
            failed = [e.step for e in snapshot.events if e.kind == EventKind.STEP_FAILED]
            step = failed[-1] if failed else step
        if status == "running" and step == "pending":
            status = "pending"
        result: Any = None
        error: dict[str, Any] | None = None
        if status == "succeeded":
            result = await handle.result() if known_result is _UNKNOWN else known_result
        elif status in ("failed", "cancelled"):
            error = await self.error_of(handle, step)
        percent = 100 if status == "succeeded" else (snapshot.percent if snapshot else 0)
        return Operation(
            id=description.id,
            type=description.workflow_type,
            status=status,
            progress={
                "step": step,
                "percent": percent,
                "counters": snapshot.counters if snapshot else {},
            },
            result=result,
            error=error,
            created_at=description.start_time,
            updated_at=description.close_time or datetime.now(UTC),
        )

    async def progress(
        self, handle: WorkflowHandle[Any, Any], after_seq: int, within: float = _QUERY_TIMEOUT
    ) -> ProgressSnapshot | None:
        """The workflow's progress, or ``None`` when no worker answers the query in time
        (or the workflow has no progress query)."""
        try:
            return await asyncio.wait_for(
                handle.query(
                    PROGRESS_QUERY, ProgressQuery(after_seq), result_type=ProgressSnapshot
                ),
                within,
            )
        except (TimeoutError, RPCError, WorkflowQueryFailedError):
            return None

    async def error_of(self, handle: WorkflowHandle[Any, Any], step: str) -> dict[str, Any]:
        try:
            await handle.result()
        except WorkflowFailureError as failure:
            return describe_failure(failure.cause, step)
        return {
            "type": f"{TYPE_BASE}operation-unknown",
            "title": "The operation did not succeed",
            "step": step,
            "code": "unknown",
        }


def summary_of(execution: WorkflowExecution) -> Operation:
    """An operation as visibility knows it: no result or error, and counters left out."""
    status = status_of(execution)
    attributes = execution.typed_search_attributes
    step = attributes.get(search.STEP) or "pending"
    if status == "running" and step == "pending":
        status = "pending"
    percent = 100 if status == "succeeded" else attributes.get(search.PERCENT) or 0
    return Operation(
        id=execution.id,
        type=execution.workflow_type,
        status=status,
        progress={"step": step, "percent": percent, "counters": {}},
        result=None,
        error=None,
        created_at=execution.start_time,
        updated_at=execution.close_time or datetime.now(UTC),
    )


def describe_failure(cause: BaseException, step: str) -> dict[str, Any]:
    """A problem-shaped summary of why a workflow failed: the step and the root cause,
    never a stack trace."""
    summary = summarize(cause)
    # Problem-shaped like every other error; ``code`` is the stable machine-readable kind.
    return {
        "type": f"{TYPE_BASE}operation-{_kebab(summary.kind)}",
        "title": summary.title,
        "detail": summary.detail,
        "step": step,
        "code": summary.kind,
    }


def _kebab(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", kind).replace("_", "-").lower()
