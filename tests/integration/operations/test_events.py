"""Progress as Server-Sent Events: resumable mid-stream, kept alive, shared by many
subscribers through one upstream watch, and openable by a browser with a stream token."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from temporalio import workflow
from temporalio.client import Client as TemporalClient
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from adx_api import operation_watch
from adx_api.app import create_app
from adx_api.keys import WATCHES
from adx_api.operations import search_attributes
from adx_api.stream_tokens import AUDIENCE
from adx_core.contracts.progress import (
    PROGRESS_QUERY,
    EventKind,
    ProgressEvent,
    ProgressQuery,
    ProgressSnapshot,
)
from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from adx_workers.resources import WorkerResources
from tests.conftest import TokenFactory
from tests.integration.operations.conftest import Client, slow_activation, start_tenant
from tests.integration.test_tenant_slice import auth, read_events, wait_for_step
from tests.support.workers import WorkerFactory

Event = tuple[str, str, dict[str, Any]]


async def _events(response: Any, count: int | None = None) -> AsyncIterator[Event]:
    """Parse an event stream as it arrives; stop after ``count`` events if given."""
    current: dict[str, str] = {}
    seen = 0
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line:
            key, _, value = line.partition(": ")
            current[key] = value
            continue
        if "data" in current:
            yield (
                current.get("id", ""),
                current.get("event", "message"),
                json.loads(current["data"]),
            )
            seen += 1
            if count is not None and seen >= count:
                return
        current = {}


async def _first(response: Any, count: int) -> list[Event]:
    return [event async for event in _events(response, count)]


@pytest.fixture
async def quick_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operation_watch, "LINGER_SECONDS", 0.3)


async def test_a_reconnect_mid_stream_resumes_without_loss_or_duplicates(
    api: Client, token: TokenFactory, worker_with: WorkerFactory, resources: WorkerResources
) -> None:
    admin = token()
    async with worker_with(slow_activation(resources, 2)):
        operation = await start_tenant(api, admin)
        events_url = operation["links"]["events"]
        stream = await api.get(events_url, headers=auth(admin))
        before = await _first(stream, 5)
        stream.close()  # the connection drops in the middle of the run
        shown = await (await api.get(operation["links"]["self"], headers=auth(admin))).json()
        assert shown["status"] in ("pending", "running")
        resumed = await api.get(events_url, headers={**auth(admin), "Last-Event-ID": before[-1][0]})
        after = await asyncio.wait_for(read_events(resumed), 30)
    # Everything, once, in order: exactly what one uninterrupted stream gives.
    whole = await asyncio.wait_for(read_events(await api.get(events_url, headers=auth(admin))), 30)
    assert before + after == whole
    ids = [int(event_id) for event_id, _, _ in whole]
    assert ids == list(range(1, len(ids) + 1))
    assert whole[-1][1] == "completed"
    finished = [data for _, kind, data in whole if data.get("phase") == "step_finished"]
    assert all(isinstance(data["duration_ms"], int) for data in finished)
    (activation,) = [data for data in finished if data["step"] == "activate_tenant"]
    assert activation["duration_ms"] >= 1900


async def test_keep_alive_comments_while_a_step_runs(
    settings: Settings,
    temporal_client: TemporalClient,
    sessions: Sessions,
    token: TokenFactory,
    worker_with: WorkerFactory,
    resources: WorkerResources,
) -> None:
    quick = settings.model_copy(update={"sse_keepalive_seconds": 0.3})
    app = create_app(quick, temporal=temporal_client, sessions=sessions)
    admin = token()
    async with TestClient(TestServer(app)) as api, worker_with(slow_activation(resources, 3)):
        operation = await start_tenant(api, admin)
        await wait_for_step(api, admin, operation["links"]["self"], "activate_tenant")
        stream = await api.get(operation["links"]["events"], headers=auth(admin))
        lines: list[str] = []
        async for raw in stream.content:
            lines.append(raw.decode().rstrip("\r\n"))
        assert lines.count(": ping") >= 3
        assert "event: completed" in lines


async def test_many_subscribers_share_one_upstream_watch(
    api: Client,
    token: TokenFactory,
    worker_with: WorkerFactory,
    resources: WorkerResources,
    quick_reaper: None,
) -> None:
    admin = token()
    watches = api.app[WATCHES]
    async with worker_with(slow_activation(resources, 2)):
        operation = await start_tenant(api, admin)
        streams = await asyncio.gather(
            *(api.get(operation["links"]["events"], headers=auth(admin)) for _ in range(25))
        )
        assert all(stream.status == 200 for stream in streams)
        assert len(watches) == 1
        received = await asyncio.wait_for(
            asyncio.gather(*(read_events(stream) for stream in streams)), 30
        )
    assert all(events == received[0] for events in received)
    assert received[0][-1][1] == "completed"
    for _ in range(50):  # the reaper runs 0.3 s after the last subscriber leaves
        if not len(watches):
            break
        await asyncio.sleep(0.1)
    assert len(watches) == 0  # nobody follows it any more: the watch has stopped


async def test_a_stream_token_opens_one_operations_events_and_nothing_else(
    api: Client, token: TokenFactory, tenants_worker: Worker, settings: Settings
) -> None:
    admin = token()
    first = await start_tenant(api, admin)
    other = await start_tenant(api, admin)
    issued = await api.post(f"{first['links']['self']}/stream-token", headers=auth(admin))
    assert issued.status == 201, await issued.text()
    assert issued.headers["Cache-Control"] == "no-store"
    body = await issued.json()
    assert body["events_url"].startswith(f"{first['links']['events']}?access_token=")

    # An EventSource sends no Authorization header: the token in the URL is enough.
    stream = await api.get(body["events_url"])
    assert stream.status == 200
    events = await asyncio.wait_for(read_events(stream), 30)
    assert events[-1][1] == "completed"

    expired = _stream_token(settings, first["id"], -60)
    forged = _stream_token(settings, first["id"], 60, "x" * 40)
    refused = [
        # For another operation.
        f"{other['links']['events']}?access_token={body['token']}",
        # On another route.
        f"{first['links']['self']}?access_token={body['token']}",
        # Expired, and forged with another key.
        f"{first['links']['events']}?access_token={expired}",
        f"{first['links']['events']}?access_token={forged}",
        f"{first['links']['events']}?access_token=",
        f"{first['links']['events']}?access_token=not.a.token",
    ]
    for url in refused:
        response = await api.get(url)
        assert response.status == 401, url
        assert response.content_type == "application/problem+json"
    # Nor is it a bearer token.
    as_bearer = await api.get(first["links"]["self"], headers=auth(body["token"]))
    assert as_bearer.status == 401


def _stream_token(
    settings: Settings, operation_id: str, ttl: int, secret: str | None = None
) -> str:
    now = int(time.time())
    assert settings.jwt_secret is not None
    return jwt.encode(
        {
            "iss": settings.jwt_issuer,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "tenant_id": "00000000-0000-4000-8000-000000000000",
            "roles": ["platform-admin"],
            "op": operation_id,
            "iat": now - 120,
            "exp": now + ttl,
        },
        secret or settings.jwt_secret.get_secret_value(),
        algorithm="HS256",
    )


async def test_unknown_foreign_and_malformed_streams_are_404_before_streaming(
    api: Client, token: TokenFactory
) -> None:
    for operation_id in ("tenant-provisioning-nope", "X", "a" * 200, "../../etc"):
        response = await api.get(f"/v1/operations/{operation_id}/events", headers=auth(token()))
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_events_are_read_from_the_history_without_a_worker(
    api: Client,
    token: TokenFactory,
    worker_with: WorkerFactory,
    resources: WorkerResources,
    quick_reaper: None,
) -> None:
    """Each progress event is in the workflow's memo, so in its history: a stream opened
    after the workers are gone still gets every event and the final one, at once."""
    admin = token()
    async with worker_with(slow_activation(resources, 0)):
        operation = await start_tenant(api, admin, Prefer="wait=20")
        with_worker = await asyncio.wait_for(
            read_events(await api.get(operation["links"]["events"], headers=auth(admin))), 30
        )
    for _ in range(50):  # the first stream's watch goes: a new one starts from scratch
        if not len(api.app[WATCHES]):
            break
        await asyncio.sleep(0.1)
    assert len(api.app[WATCHES]) == 0
    started = time.monotonic()
    stream = await api.get(operation["links"]["events"], headers=auth(admin))
    without = await asyncio.wait_for(read_events(stream), 30)
    # No query waited for a worker: that would take three 5 s attempts.
    assert time.monotonic() - started < 5
    assert without[-1][1] == "completed"
    assert [e for e in without if e[1] != "completed"] == [
        e for e in with_worker if e[1] != "completed"
    ]
    assert len(without) == 17


@workflow.defn(name="legacy_progress_workflow")
class LegacyProgress:
    """A workflow that reports progress only through the query, as executions started
    before the memo did: the watch follows it by querying after each workflow task."""

    def __init__(self) -> None:
        self._events: list[ProgressEvent] = []

    @workflow.run
    async def run(self, steps: int) -> int:
        for seq in range(1, steps + 1):
            self._events.append(
                ProgressEvent(seq, EventKind.STEP_FINISHED, f"step{seq}", seq, workflow.now())
            )
            await workflow.sleep(0.2)
        return steps

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        events = [event for event in self._events if event.seq > query.after_seq]
        last = self._events[-1] if self._events else None
        return ProgressSnapshot(
            step=last.step if last else "pending",
            percent=last.percent if last else 0,
            counters={},
            last_seq=last.seq if last else 0,
            events=events,
        )


async def test_a_workflow_without_progress_in_its_memo_is_followed_by_query(
    api: Client, token: TokenFactory, temporal_client: TemporalClient, settings: Settings
) -> None:
    admin_claims_tenant = "00000000-0000-4000-8000-000000000000"
    queue = settings.task_queue("legacy")
    # Defined in this test module, which the sandbox would have to re-import: unsandboxed.
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[LegacyProgress],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await temporal_client.start_workflow(
            LegacyProgress.run,
            5,
            id=f"legacy-{uuid.uuid4().hex[:12]}",
            task_queue=queue,
            search_attributes=search_attributes(admin_claims_tenant, "legacy-test"),
        )
        stream = await api.get(f"/v1/operations/{handle.id}/events", headers=auth(token()))
        events = await asyncio.wait_for(read_events(stream), 30)
    assert [int(event_id) for event_id, _, _ in events] == [1, 2, 3, 4, 5, 6]
    assert [data["step"] for _, kind, data in events if kind == "step"] == [
        f"step{n}" for n in range(1, 6)
    ]
    assert events[-1][1] == "completed"
    assert events[-1][2]["result"] == 5


async def test_a_stranger_probing_an_id_does_not_fail_the_owners_stream(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    """The owner and a stranger open the same operation's events at the same instant: the
    stranger gets 404 and starts no watch, the owner streams as usual."""
    admin = token()
    operation = await start_tenant(api, admin, Prefer="wait=20")
    stranger = auth(token(tenant_id=str(uuid.uuid4())))
    url = operation["links"]["events"]
    for first_is_stranger in (True, False):
        answers = await asyncio.gather(
            *(
                api.get(url, headers=stranger if (n == 0) == first_is_stranger else auth(admin))
                for n in range(6)
            )
        )
        owners = [a for n, a in enumerate(answers) if (n == 0) != first_is_stranger]
        strangers = [a for n, a in enumerate(answers) if (n == 0) == first_is_stranger]
        assert all(answer.status == 404 for answer in strangers)
        assert all(answer.status == 200 for answer in owners)
        for answer in owners:
            assert (await asyncio.wait_for(read_events(answer), 30))[-1][1] == "completed"
