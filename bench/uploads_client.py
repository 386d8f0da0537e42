"""The client side of the upload benchmarks: a generated body streamed over HTTP, the
operation polled through the API, and the workflow's steps read from its history."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.uploads_results import MIB, Step

CHUNK = MIB


def small_body(size: int) -> bytes:
    """``size`` random bytes of their own: of no known type, as most uploads of
    ``application/octet-stream`` are."""
    return os.urandom(size)


class Generated:
    """``size`` bytes in chunks of 1 MiB, never held whole: one random block, each copy
    stamped with its index so that no two chunks are equal (a swapped or repeated chunk
    changes the hash). Cheap to make, but compressible, which clamd does not care
    about."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._block = os.urandom(CHUNK)

    def chunks(self) -> Iterator[bytes]:
        sent = index = 0
        while sent < self.size:
            length = min(CHUNK, self.size - sent)
            stamp = index.to_bytes(8, "big")
            yield (stamp + self._block[len(stamp) :])[:length]
            sent += length
            index += 1

    def sha256(self) -> str:
        """Computed before the upload, so the client spends no CPU on it meanwhile."""
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk


@dataclass
class UploadApi:
    """``POST /v1/files`` and ``GET /v1/operations/{id}`` as one tenant member."""

    session: aiohttp.ClientSession
    base_url: str
    token: str

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    async def upload(
        self,
        body: bytes | AsyncIterator[bytes],
        size: int,
        name: str,
        *,
        content_type: str = "application/octet-stream",
        wait: int | None = None,
        within: float = 60.0,
    ) -> tuple[int, dict[str, Any]]:
        # Content-Length as a real client sends it (the API refuses what cannot fit at
        # once); an async iterable body is then streamed, not chunk-encoded.
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        if wait is not None:
            headers["Prefer"] = f"wait={wait}"
        async with self.session.post(
            f"{self.base_url}/v1/files",
            params={"name": name},
            data=body,
            headers=self._headers(headers),
            timeout=aiohttp.ClientTimeout(total=within + (wait or 0)),
        ) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            return response.status, payload

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(f"{self.base_url}{path}", headers=self._headers({})) as got:
            payload: dict[str, Any] = await got.json(content_type=None)
            return got.status, payload


def describe_failure(status: int, payload: dict[str, Any]) -> str:
    """A short reason for an answer that was not the one expected."""
    detail = payload.get("detail") or payload.get("title") or payload.get("status")
    error = payload.get("error")
    if isinstance(error, dict):
        detail = error.get("detail") or error.get("type") or detail
    return f"HTTP {status}: {detail}"


_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("activity_task_completed", "completed"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("activity_task_failed", "failed"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("activity_task_timed_out", "timed out"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("activity_task_canceled", "cancelled"),
}
_WORKFLOW_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
}


@dataclass
class Timeline:
    started: float  # the workflow, seconds since ``origin``
    closed: float
    steps: list[Step]


async def timeline(client: Client, workflow_id: str, origin: float) -> Timeline:
    """The workflow's activities from its history, in seconds since ``origin`` (a
    ``time.time()`` of this machine; Temporal's event times use the same clock). An
    activity retried by Temporal shows once, from its scheduling to its last attempt."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = closed = float("nan")
    scheduled: dict[int, tuple[str, float]] = {}
    began: dict[int, tuple[float, int]] = {}
    steps: list[Step] = []
    for event in history.events:
        at = event.event_time.ToDatetime().timestamp() - origin
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started = at
        elif kind in _WORKFLOW_CLOSED:
            closed = at
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (name, at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            began[attrs.scheduled_event_id] = (at, attrs.attempt)
        elif kind in _CLOSED:
            field_name, outcome = _CLOSED[kind]
            ref = getattr(event, f"{field_name}_event_attributes").scheduled_event_id
            name, at_scheduled = scheduled[ref]
            at_started, attempt = began.get(ref, (at_scheduled, 1))
            steps.append(Step(name, at_scheduled, at_started, at, attempt, outcome))
    return Timeline(started, closed, steps)
