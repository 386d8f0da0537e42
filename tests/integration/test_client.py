"""``adx_core.client`` and ``adx ops`` against the live API on a loopback port, with the
real Temporal and PostgreSQL behind it.

The dropped-connection tests put a small reverse proxy of our own between the client and
the API: it breaks the first event stream off after a few events, the way a load balancer
or a flaky network does, and records what the client sent when it came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result
from temporalio.worker import Worker
from yarl import URL

from adx_cli.main import main
from adx_core.auth import Role
from adx_core.client import (
    AdxClient,
    ApiProblem,
    Event,
    Operation,
    OperationFailed,
    SseParser,
    WaitTimeout,
)
from adx_core.contracts.tenants import CREATE_TENANT_STORAGE_ACTIVITY
from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_compensation import activation_hangs, failing
from tests.integration.test_tenant_slice import BODY
from tests.support.tenancy import seed_tenant
from tests.support.workers import WorkerFactory

Client = TestClient[web.Request, web.Application]
PROVISIONING = "tenant_provisioning_workflow"


def tenant_body() -> dict[str, Any]:
    slug = f"c{uuid.uuid4().hex[:10]}"
    return {**BODY, "slug": slug, "admin": {"email": f"ada@{slug}.test", "name": "Ada"}}


def base_url(api: Client) -> str:
    return str(api.make_url("/"))


@pytest.fixture
async def adx(api: Client, token: TokenFactory) -> AsyncIterator[AdxClient]:
    async with AdxClient(base_url(api), token()) as client:
        yield client


async def collect(events: AsyncIterator[Event], within: float = 30) -> list[Event]:
    async def run() -> list[Event]:
        return [event async for event in events]

    return await asyncio.wait_for(run(), within)


# -- start, wait, run ------------------------------------------------------------------------


async def test_start_answers_202_and_wait_follows_it_to_the_end(
    adx: AdxClient, tenants_worker: Worker
) -> None:
    answer = await adx.start("POST", "/v1/tenants", json=tenant_body())
    assert answer.status == 202
    assert answer.operation is not None
    assert answer.location == f"/v1/operations/{answer.operation.id}"
    assert answer.operation.type == PROVISIONING
    assert not answer.done

    final = await adx.wait(answer.operation.id, timeout=30)
    assert final.status == "succeeded"
    assert final.progress.percent == 100
    assert final.result["status"] == "active"
    assert await adx.result(final.id) == final.result
    assert (await adx.get(final.id)).result == final.result


async def test_start_with_wait_answers_200_with_the_finished_operation(
    adx: AdxClient, tenants_worker: Worker
) -> None:
    body = tenant_body()
    answer = await adx.start("POST", "/v1/tenants", json=body, wait=20)
    assert answer.status == 200
    assert answer.done
    assert answer.operation is not None
    assert answer.operation.succeeded
    assert answer.resource["slug"] == body["slug"]
    # run() is start and wait in one call: the caller gets the tenant.
    tenant = await adx.run("POST", "/v1/tenants", json=tenant_body(), timeout=30)
    assert tenant["status"] == "active"


async def test_a_direct_route_reads_the_same_through_start_and_run(
    api: Client, settings: Settings, sessions: Sessions
) -> None:
    tenant = await seed_tenant(sessions, members={"admin": Role.TENANT_ADMIN})
    async with AdxClient(base_url(api), tenant.token(settings, "admin")) as adx:
        answer = await adx.start("POST", "/v1/groups", json={"name": "editors"})
        assert answer.status == 201
        assert answer.operation is None
        assert answer.done
        assert answer.resource["name"] == "editors"
        group = await adx.run("POST", "/v1/groups", json={"name": "readers"})
        assert group["name"] == "readers"


async def test_an_idempotency_key_names_the_same_operation(
    adx: AdxClient, tenants_worker: Worker
) -> None:
    body, key = tenant_body(), f"k-{uuid.uuid4().hex}"
    first = await adx.start("POST", "/v1/tenants", json=body, idempotency_key=key)
    again = await adx.start("POST", "/v1/tenants", json=body, idempotency_key=key)
    assert first.operation is not None
    assert again.operation is not None
    assert again.operation.id == first.operation.id


# -- follow ------------------------------------------------------------------------------------


async def test_follow_yields_the_steps_then_completed(
    adx: AdxClient, tenants_worker: Worker
) -> None:
    answer = await adx.start("POST", "/v1/tenants", json=tenant_body())
    assert answer.operation is not None
    events = await collect(adx.follow(answer.operation.id))

    assert events[-1].kind == "completed"
    assert events[-1].operation().status == "succeeded"
    assert all(not event.final for event in events[:-1])
    steps = [event for event in events if event.kind == "step"]
    assert steps
    assert steps[0].data["step"] == "validate_request"
    ids = [int(event.id) for event in events]
    assert ids == sorted(set(ids))

    # Resumed after the third event: exactly what came after it.
    rest = await collect(adx.follow(answer.operation.id, last_event_id=events[2].id))
    assert rest == events[3:]
    # Resumed after the final event: nothing more, and no endless reconnecting.
    assert await collect(adx.follow(answer.operation.id, last_event_id=events[-1].id)) == []


class CuttingProxy:
    """A reverse proxy in front of the API. It breaks the first event stream off after
    ``cut_after`` events, announcing ``retry`` just before the break, and records the
    Last-Event-ID of each stream request and when it came. With ``refuse_streams`` it
    answers every stream request with an HTML page, as a misconfigured proxy might; with
    ``unavailable_first`` it answers the first so many other requests 503."""

    def __init__(
        self,
        upstream: str,
        *,
        cut_after: int = 2,
        retry_ms: int | None = None,
        refuse_streams: bool = False,
        unavailable_first: int = 0,
    ) -> None:
        self.upstream = URL(upstream)
        self.cut_after = cut_after
        self.retry_ms = retry_ms
        self.refuse_streams = refuse_streams
        self.unavailable_first = unavailable_first
        self.requests: list[str] = []
        self.stream_requests: list[tuple[float, str | None]] = []
        self.cut_at: float | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> str:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return str(self._server.make_url("/"))

    async def __aexit__(self, *exc: object) -> None:
        await self._server.close()
        assert self._session is not None
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        if request.path.endswith("/events"):
            now = asyncio.get_running_loop().time()
            self.stream_requests.append((now, request.headers.get("Last-Event-ID")))
            if self.refuse_streams:
                return web.Response(text="<html>buffering</html>", content_type="text/html")
        else:
            self.requests.append(f"{request.method} {request.path}")
            if len(self.requests) <= self.unavailable_first:
                return web.json_response(
                    {"type": "https://adx.dev/problems/unavailable", "title": "Unavailable"},
                    status=503,
                    content_type="application/problem+json",
                    headers={"Retry-After": "1"},
                )
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        upstream = await self._session.request(
            request.method,
            self.upstream.join(request.rel_url),
            headers=headers,
            data=await request.read() or None,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
        )
        async with upstream:
            if not upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
                passed = {k: v for k, v in upstream.headers.items() if k.lower() == "location"}
                return web.Response(
                    status=upstream.status,
                    body=await upstream.read(),
                    headers={**passed, "Content-Type": upstream.headers["Content-Type"]},
                )
            return await self._relay_stream(request, upstream)

    async def _relay_stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        cutting = self.cut_at is None
        parser, seen = SseParser(), 0
        async for chunk in upstream.content.iter_any():
            if not cutting:
                await response.write(chunk)
                continue
            # Byte by byte, to stop exactly at the end of the cut_after-th event.
            for i in range(len(chunk)):
                seen += len(parser.feed(chunk[i : i + 1]))
                if seen == self.cut_after:
                    await response.write(chunk[: i + 1])
                    if self.retry_ms is not None:
                        # Last, so that it overrides the API's own retry: at the stream's start.
                        await response.write(f"retry: {self.retry_ms}\r\n\r\n".encode())
                    self.cut_at = asyncio.get_running_loop().time()
                    assert request.transport is not None
                    request.transport.close()  # no closing chunk: the client sees a break
                    return response
            await response.write(chunk)
        return response


async def test_a_dropped_stream_resumes_without_loss_or_duplicates(
    api: Client, adx: AdxClient, token: TokenFactory, tenants_worker: Worker
) -> None:
    answer = await adx.start("POST", "/v1/tenants", json=tenant_body())
    assert answer.operation is not None
    operation_id = answer.operation.id
    proxy = CuttingProxy(base_url(api), cut_after=2, retry_ms=1500)
    async with proxy as proxy_url, AdxClient(proxy_url, token()) as through_proxy:
        events = await collect(through_proxy.follow(operation_id))

    # The whole stream, read afterwards in one go, is the reference.
    reference = await collect(adx.follow(operation_id))
    assert [e.id for e in events] == [e.id for e in reference]
    assert events == reference
    assert events[-1].kind == "completed"
    assert len(events) > 2, "the cut came after the end"

    (_first_at, first_id), (again_at, again_id) = proxy.stream_requests
    assert first_id is None
    assert again_id == events[1].id  # resumed right after the last event it had
    # The server's retry: 1500 was honoured (the client's own default is 0.5 s at most).
    assert proxy.cut_at is not None
    assert again_at - proxy.cut_at >= 1.5 * 0.8


async def test_wait_polls_when_the_stream_cannot_be_had(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    async with (
        CuttingProxy(base_url(api), refuse_streams=True) as proxy_url,
        AdxClient(proxy_url, token(), poll_interval=0.1) as adx,
    ):
        answer = await adx.start("POST", "/v1/tenants", json=tenant_body())
        assert answer.operation is not None
        final = await adx.wait(answer.operation.id, timeout=30)
    assert final.status == "succeeded"


async def test_a_stream_token_opens_the_events_without_the_bearer_token(
    api: Client, adx: AdxClient, tenants_worker: Worker
) -> None:
    answer = await adx.start("POST", "/v1/tenants", json=tenant_body(), wait=20)
    assert answer.operation is not None
    stream = await adx.stream_token(answer.operation.id)
    assert stream.events_url.startswith(f"/v1/operations/{answer.operation.id}/events?")
    async with AdxClient(base_url(api)) as anonymous:
        events = await collect(anonymous.follow(answer.operation.id, stream_token=stream.token))
        assert events[-1].kind == "completed"
        with pytest.raises(ApiProblem) as unauthenticated:
            await anonymous.get(answer.operation.id)
    assert unauthenticated.value.status == 401


async def test_gets_are_tried_again_after_503_and_posts_are_not(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    async with AdxClient(base_url(api), token()) as direct:
        answer = await direct.start("POST", "/v1/tenants", json=tenant_body(), wait=20)
    assert answer.operation is not None
    operation_id = answer.operation.id

    get_proxy = CuttingProxy(base_url(api), unavailable_first=1)
    async with get_proxy as proxy_url, AdxClient(proxy_url, token()) as adx:
        assert (await adx.get(operation_id)).status == "succeeded"
    assert get_proxy.requests == [f"GET /v1/operations/{operation_id}"] * 2

    post_proxy = CuttingProxy(base_url(api), unavailable_first=1)
    async with post_proxy as proxy_url, AdxClient(proxy_url, token()) as adx:
        with pytest.raises(ApiProblem) as unavailable:
            await adx.start("POST", "/v1/tenants", json=tenant_body())
    assert unavailable.value.status == 503
    assert post_proxy.requests == ["POST /v1/tenants"]


# -- cancel, result, errors ------------------------------------------------------------------


async def running_until_activation(adx: AdxClient) -> Operation:
    """Start a tenant whose last step hangs until cancelled; return once it has started."""
    answer = await adx.start("POST", "/v1/tenants", json=tenant_body())
    assert answer.operation is not None
    async with contextlib.aclosing(adx.follow(answer.operation.id)) as events:
        async for event in events:
            if event.kind == "step" and event.data["step"] == "activate_tenant":
                break
    return await adx.get(answer.operation.id)


async def test_cancel_mid_run_ends_cancelled(adx: AdxClient, worker_with: WorkerFactory) -> None:
    async with worker_with(activation_hangs):
        operation = await asyncio.wait_for(running_until_activation(adx), 30)
        with pytest.raises(ApiProblem) as unfinished:
            await adx.result(operation.id)
        assert (unfinished.value.status, unfinished.value.kind) == (409, "operation-not-finished")

        accepted = await adx.cancel(operation.id)
        assert accepted.id == operation.id
        events = await collect(adx.follow(operation.id))
        final = await adx.wait(operation.id, timeout=30)
        with pytest.raises(ApiProblem) as again:
            await adx.cancel(operation.id)

    assert events[-1].kind == "cancelled"
    assert final.status == "cancelled"
    assert final.error is not None
    assert final.error["step"] == "activate_tenant"
    assert again.value.status == 409


async def test_run_raises_when_the_operation_fails(
    adx: AdxClient, worker_with: WorkerFactory
) -> None:
    async with worker_with(failing(CREATE_TENANT_STORAGE_ACTIVITY)):
        with pytest.raises(OperationFailed, match="failed at step setup_storage") as failed:
            await adx.run("POST", "/v1/tenants", json=tenant_body(), timeout=30)
    assert failed.value.operation.status == "failed"
    assert failed.value.operation.error is not None


async def test_cancel_with_wait_answers_once_it_has_ended(
    adx: AdxClient, worker_with: WorkerFactory
) -> None:
    async with worker_with(activation_hangs):
        operation = await asyncio.wait_for(running_until_activation(adx), 30)
        ended = await adx.cancel(operation.id, wait=20)
        with pytest.raises(ApiProblem) as result:
            await adx.result(operation.id)
    assert ended.status == "cancelled"
    assert result.value.status == 409
    assert result.value.kind.startswith("operation-")


async def test_wait_gives_up_after_its_timeout(adx: AdxClient, worker_with: WorkerFactory) -> None:
    async with worker_with(activation_hangs):
        operation = await asyncio.wait_for(running_until_activation(adx), 30)
        with pytest.raises(WaitTimeout):
            await adx.wait(operation.id, timeout=0.5)
        await adx.cancel(operation.id, wait=20)


async def test_errors_are_problems(adx: AdxClient, tenants_worker: Worker) -> None:
    with pytest.raises(ApiProblem) as missing:
        await adx.get("tenant-provisioning-00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404
    assert missing.value.type.endswith("/not-found")
    assert missing.value.title
    assert missing.value.problem["status"] == 404

    with pytest.raises(ApiProblem) as invalid:
        await adx.start("POST", "/v1/tenants", json={"slug": "NO SPACES"})
    assert invalid.value.status == 422
    assert invalid.value.detail
    assert "errors" in invalid.value.problem

    with pytest.raises(ApiProblem) as follow_missing:
        await collect(adx.follow("no-such-operation"))
    assert follow_missing.value.status == 404


# -- list ----------------------------------------------------------------------------------------


async def test_list_follows_the_cursor(adx: AdxClient, tenants_worker: Worker) -> None:
    started = set()
    for _ in range(3):
        answer = await adx.start("POST", "/v1/tenants", json=tenant_body(), wait=20)
        assert answer.operation is not None
        started.add(answer.operation.id)

    # Visibility is eventually consistent: the list catches up within moments.
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        listed = [op async for op in adx.list(type=PROVISIONING, status="succeeded", page_size=1)]
        if started <= {op.id for op in listed}:
            break
        assert asyncio.get_running_loop().time() < deadline, listed
        await asyncio.sleep(0.3)
    ours = [op for op in listed if op.id in started]
    assert all(op.status == "succeeded" and op.type == PROVISIONING for op in ours)
    assert len({op.id for op in listed}) == len(listed), "a page repeated an item"

    with pytest.raises(ApiProblem) as bad:
        async for _ in adx.list(since="yesterday"):
            pass
    assert bad.value.status == 400


# -- adx ops -------------------------------------------------------------------------------------


async def adx_ops(api: Client, bearer: str, *args: str) -> Result:
    """``adx ops`` in a thread: it runs its own event loop, against the API in ours."""
    argv = ["ops", "--api", base_url(api), "--token", bearer, *args]
    return await asyncio.to_thread(CliRunner().invoke, main, argv)


async def test_adx_ops_on_the_command_line(
    api: Client, adx: AdxClient, token: TokenFactory, worker_with: WorkerFactory
) -> None:
    bearer = token()
    async with worker_with(activation_hangs):
        operation = await asyncio.wait_for(running_until_activation(adx), 30)

        got = await adx_ops(api, bearer, "get", operation.id)
        assert got.exit_code == 0, got.stderr
        assert json.loads(got.stdout)["status"] == "running"

        running = await adx_ops(api, bearer, "result", operation.id)
        assert running.exit_code == 3
        assert "has not finished" in running.stderr

        timed_out = await adx_ops(api, bearer, "wait", operation.id, "--timeout", "0.5")
        assert timed_out.exit_code == 3

        cancelled = await adx_ops(api, bearer, "cancel", operation.id, "--wait", "20")
        assert cancelled.exit_code == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["status"] == "cancelled"

        waited = await adx_ops(api, bearer, "wait", operation.id, "--timeout", "20")
        assert waited.exit_code == 1  # the operation ended cancelled
        assert json.loads(waited.stdout)["status"] == "cancelled"

        followed = await adx_ops(api, bearer, "follow", operation.id)
        assert followed.exit_code == 1
        lines = [json.loads(line) for line in followed.stdout.splitlines()]
        assert lines[-1]["event"] == "cancelled"
        assert {"id", "event", "data"} == set(lines[0])

        again = await adx_ops(api, bearer, "cancel", operation.id)
        assert again.exit_code == 2
        assert "409" in again.stderr

    missing = await adx_ops(api, bearer, "get", "no-such-operation")
    assert missing.exit_code == 2
    assert "404" in missing.stderr
    assert "not-found" in missing.stderr
    no_token = await asyncio.to_thread(
        CliRunner(env={"ADX_TOKEN": None}).invoke, main, ["ops", "get", "x"]
    )
    assert no_token.exit_code == 2


async def test_adx_ops_start_and_wait(
    api: Client, token: TokenFactory, tenants_worker: Worker, tmp_path: Any
) -> None:
    bearer = token()
    body = tmp_path / "tenant.json"
    body.write_text(json.dumps(tenant_body()))
    started = await adx_ops(api, bearer, "start", "POST", "/v1/tenants", "--json", str(body))
    assert started.exit_code == 0, started.stderr
    operation = json.loads(started.stdout)
    waited = await adx_ops(api, bearer, "wait", operation["id"], "--timeout", "30")
    assert waited.exit_code == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "succeeded"
    result = await adx_ops(api, bearer, "result", operation["id"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "active"

    deadline = asyncio.get_running_loop().time() + 20
    while True:  # until visibility has caught up with the operation
        listed = await adx_ops(api, bearer, "list", "--type", PROVISIONING, "--limit", "500")
        assert listed.exit_code == 0, listed.stderr
        ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
        if operation["id"] in ids:
            break
        assert asyncio.get_running_loop().time() < deadline, ids
        await asyncio.sleep(0.3)
    one = await adx_ops(api, bearer, "list", "--status", "succeeded", "--limit", "1")
    assert len(one.stdout.splitlines()) == 1
