"""The API's resources as the client hands them out: operations, stream events, the answer
to a call that may start an operation, and a stream token."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from yarl import URL

from adx_core.client.errors import ApiError

OPERATIONS_PATH = "/v1/operations/"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
FINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Progress:
    step: str
    percent: float
    counters: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """A workflow operation. ``raw`` is the JSON as the API sent it, for fields this class
    does not name."""

    id: str
    type: str
    status: str
    progress: Progress
    result: Any
    error: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None
    links: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, body: Any) -> Operation:
        if not isinstance(body, dict):
            raise ApiError(200, "expected an operation object", repr(body)[:200])
        try:
            progress = body.get("progress") or {}
            return cls(
                id=str(body["id"]),
                type=str(body["type"]),
                status=str(body["status"]),
                progress=Progress(
                    step=str(progress.get("step", "")),
                    percent=float(progress.get("percent") or 0),
                    counters=dict(progress.get("counters") or {}),
                ),
                result=body.get("result"),
                error=body.get("error"),
                created_at=_timestamp(body.get("created_at")),
                updated_at=_timestamp(body.get("updated_at")),
                links={str(k): str(v) for k, v in (body.get("links") or {}).items()},
                raw=body,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ApiError(200, f"not an operation ({err!r})", repr(body)[:200]) from None


@dataclass(frozen=True)
class Event:
    """One event of an operation's stream: ``kind`` is the SSE event name (``step``,
    ``progress``, ``completed``, ``failed`` or ``cancelled``) and ``data`` its JSON."""

    id: str
    kind: str
    data: Any

    @property
    def final(self) -> bool:
        return self.kind in FINAL_EVENTS

    def operation(self) -> Operation:
        """The final operation a ``completed``, ``failed`` or ``cancelled`` event carries."""
        if not self.final:
            raise ValueError(f"a {self.kind!r} event carries no operation")
        return Operation.from_json(self.data)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.kind, "data": self.data}


@dataclass(frozen=True)
class Answer:
    """What a call that may start an operation got back, whichever kind of route it was.

    A direct route answers with the resource itself (``operation`` is ``None``). A workflow
    route answers with an operation: still running (202), or finished within ``Prefer:
    wait`` (200). ``done`` and ``resource`` read the same for both; ``AdxClient.run`` waits
    and hands back the resource in one call.
    """

    status: int
    body: Any
    location: str | None
    operation: Operation | None

    @property
    def done(self) -> bool:
        return self.operation is None or self.operation.done

    @property
    def resource(self) -> Any:
        """The resource: the direct answer's body, or the operation's result (``None`` until
        it has succeeded)."""
        if self.operation is None:
            return self.body
        return self.operation.result


@dataclass(frozen=True)
class StreamToken:
    """A short-lived token for one operation's events, for clients that cannot send an
    Authorization header (a browser's EventSource)."""

    token: str
    expires_at: datetime | None
    events_url: str

    @classmethod
    def from_json(cls, body: Any) -> StreamToken:
        try:
            return cls(
                token=str(body["token"]),
                expires_at=_timestamp(body.get("expires_at")),
                events_url=str(body["events_url"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ApiError(201, f"not a stream token ({err!r})", repr(body)[:200]) from None


def is_operation_location(location: str | None) -> bool:
    """A workflow route's answer points at its operation, relative or absolute."""
    if not location:
        return False
    return URL(location).path.startswith(OPERATIONS_PATH)


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value))
