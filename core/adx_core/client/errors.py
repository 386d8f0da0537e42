"""What the client raises. Every error is an ``AdxClientError``, so a script can catch one
type; the subclasses say what went wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adx_core.client.models import Operation


class AdxClientError(Exception):
    """The base of every error the client raises."""


class ApiError(AdxClientError):
    """An error answer that is not ``application/problem+json`` (a proxy's HTML page, say),
    or a success answer the client cannot read."""

    def __init__(self, status: int, message: str, body: str = "") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        #: The answer's X-Request-ID, to find the request in the server's logs.
        self.request_id: str | None = None


class ApiProblem(ApiError):
    """An RFC 9457 problem answer. Branch on ``type``, a stable URI per kind of error; the
    ``title`` and ``detail`` are for people."""

    def __init__(
        self, status: int, type: str, title: str, detail: str | None, body: dict[str, Any]
    ) -> None:
        message = f"{title}: {detail}" if detail else title
        super().__init__(status, message, "")
        self.type = type
        self.title = title
        self.detail = detail
        self.problem = body

    @property
    def kind(self) -> str:
        """The last segment of ``type``, such as ``not-found`` or ``operation-not-finished``."""
        return self.type.rstrip("/").rpartition("/")[2]


class OperationFailed(AdxClientError):
    """The operation ended ``failed`` or ``cancelled``; ``operation.error`` says why."""

    def __init__(self, operation: Operation) -> None:
        error = operation.error or {}
        where = f" at step {error['step']}" if error.get("step") else ""
        why = error.get("detail") or error.get("title") or "no reason given"
        super().__init__(f"operation {operation.id} {operation.status}{where}: {why}")
        self.operation = operation


class StreamUnavailable(AdxClientError):
    """The event stream could not be opened, or kept dropping past the retry budget."""


class WaitTimeout(AdxClientError, TimeoutError):
    """The operation had not finished within the time the caller allowed."""

    def __init__(self, operation_id: str, timeout: float | None) -> None:
        super().__init__(f"operation {operation_id} had not finished after {timeout} s")
        self.operation_id = operation_id
        self.timeout = timeout
