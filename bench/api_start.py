"""Part 1 of the API benchmarks: the time to 202 of workflow routes on ``adx api``.

Rounds of one client, of two kinds: *one at a time*, each round waiting until the
workflows it started have finished (the server has nothing else to do when a request
comes), and *back to back* (the server and the workers busy with the workflows just
started). A round makes a ``POST /v1/tenants`` (tenant_provisioning_workflow) and a
``POST /v1/users`` (user_onboarding_workflow), both answered 202; two direct calls to the
same process, ``POST /v1/groups`` (one INSERT, 201) and ``GET /healthz`` (no
authentication, no I/O: HTTP and the middlewares alone); and, from the bench process, a
``start_workflow`` alone with a client configured as the API's (the tenants route's
argument, search attributes and memo, on a task queue no worker polls, terminated
afterwards): what the start RPC costs at that moment. The API's ``/metrics``, read before
and after, gives the time inside the process per route and the latency of each Temporal
RPC its client made.

``steps`` then times, from the bench process, the steps of the tenants route one by one
(as bench.breakdown does, with floors to compare them with): the token check, the body's
validation, the slug lookup and, for scale, a bare ``SELECT 1`` through the same session
factory; ``start_workflow`` of the unpolled workflow with the API's client configuration
(AES-GCM codec, interceptors) and with a bare client; and GetSystemInfo, the cheapest
round trip to the Temporal frontend.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from adx_api.operations import search_attributes
from adx_api.routes.tenants import CreateTenantIn
from adx_core.auth import Role, mint_token, verify_token
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
    TenantAdmin,
    TenantCreationRequest,
)
from adx_core.db.engine import create_engine, create_sessions
from adx_core.db.repositories import tenant_id_for_slug
from adx_core.settings import Settings
from bench import load
from bench.api_client import Caller, Samples, delta, get_ok, post_group, post_user, scrape
from bench.api_results import Mean, StartRounds
from bench.stats import Series

T = TypeVar("T")

LOADED_ROUNDS = 100
LOADED_BUDGET_SECONDS = 30.0
PACED_ROUNDS = 40
PACED_BUDGET_SECONDS = 35.0
# The longest a paced round waits for the workflows it started.
SETTLE_SECONDS = 10.0
STEP_ITERATIONS = 50
STEP_BUDGET_SECONDS = 20.0

TENANT_202 = "POST /v1/tenants → 202"
USER_202 = "POST /v1/users → 202"
GROUP_201 = "POST /v1/groups → 201 (direct)"
HEALTHZ = "GET /healthz (no auth, no I/O)"
START_RPC = "start_workflow alone, from the bench (the API's client config)"
WORKFLOW_KINDS = (TENANT_202, USER_202)
ROUTES = {
    TENANT_202: ("POST", "/v1/tenants"),
    USER_202: ("POST", "/v1/users"),
    GROUP_201: ("POST", "/v1/groups"),
    HEALTHZ: ("GET", "/healthz"),
}
RPCS = ("StartWorkflowExecution", "GetSystemInfo")

TOKEN_CHECK = "token check (verify_token)"  # noqa: S105 - a step name
BODY = "body validation (CreateTenantIn)"
LOOKUP = "slug lookup: session, SELECT adx_tenant_id_for_slug"
SELECT_ONE = "for scale: session, SELECT 1"
START_API_CLIENT = "start_workflow, the API's client (codec, interceptors)"
START_BARE_CLIENT = "start_workflow, bare client (no codec, no interceptors)"
SYSTEM_INFO = "for scale: GetSystemInfo (a gRPC round trip)"
STEPS = (TOKEN_CHECK, BODY, LOOKUP, SELECT_ONE, START_API_CLIENT, START_BARE_CLIENT, SYSTEM_INFO)
IN_THE_202 = (TOKEN_CHECK, BODY, LOOKUP, START_API_CLIENT)

# The task queue nobody polls: the starts timed here must not run anything.
_UNPOLLED_QUEUE = "bench-unpolled"
_UNPOLLED_WORKFLOW = "bench_unpolled_workflow"


def _calls(
    tenants: load.Api,
    admin: Caller,
    session: aiohttp.ClientSession,
    client: Client,
    unpolled: UnpolledStarts,
    tag: str,
) -> dict[str, load.Call]:
    return {
        TENANT_202: load.post_202(tenants, f"t{tag}"),
        USER_202: post_user(admin, f"u{tag}"),
        GROUP_201: post_group(admin, f"g{tag}"),
        HEALTHZ: get_ok(session, f"{admin.base_url}/healthz"),
        START_RPC: unpolled.call(client, tenants.body),
    }


async def measure_loaded(
    tenants: load.Api,
    admin: Caller,
    session: aiohttp.ClientSession,
    client: Client,
    rounds: StartRounds,
) -> None:
    """Round after round, the workers running the workflows just started meanwhile.
    ``client`` is configured as the API's (the bench's ``connect``)."""
    unpolled = UnpolledStarts()
    before = await scrape(session, admin.base_url)
    try:
        rounds.phase = await load.run_rounds(
            "202 back to back",
            _calls(tenants, admin, session, client, unpolled, "l"),
            rounds=LOADED_ROUNDS,
            lanes=1,
            budget_seconds=LOADED_BUDGET_SECONDS,
        )
    finally:
        await unpolled.terminate(client)
    _server_side(rounds, before, await scrape(session, admin.base_url))


async def measure_paced(
    tenants: load.Api,
    admin: Caller,
    session: aiohttp.ClientSession,
    client: Client,
    rounds: StartRounds,
) -> None:
    """Round by round, each waiting until the workflows it started have finished, so that
    every request meets a server with nothing else to do."""
    unpolled = UnpolledStarts()
    calls = _calls(tenants, admin, session, client, unpolled, "p")
    kinds = list(calls)
    series = {kind: Series(kind) for kind in kinds}
    before = await scrape(session, admin.base_url)
    began = time.monotonic()
    done = 0
    try:
        for index in range(PACED_ROUNDS):
            if time.monotonic() - began >= PACED_BUDGET_SECONDS:
                break
            marks = len(tenants.started_ids), len(admin.started_ids)
            shift = index % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                await _timed_call(series[kind], calls[kind], index)
            started = tenants.started_ids[marks[0] :] + admin.started_ids[marks[1] :]
            await asyncio.gather(*(_finished(client, workflow_id) for workflow_id in started))
            done += 1
    finally:
        await unpolled.terminate(client)
    rounds.phase = load.PhaseResult(
        name="202 one at a time",
        lanes=1,
        rounds_planned=PACED_ROUNDS,
        rounds_done=done,
        wall_seconds=time.monotonic() - began,
        series=series,
        stopped_by_budget=done < PACED_ROUNDS,
    )
    _server_side(rounds, before, await scrape(session, admin.base_url))


async def _timed_call(series: Series, call: load.Call, index: int) -> None:
    began = time.perf_counter()
    try:
        failure = await call(index)
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        failure = type(err).__name__
    if failure is None:
        series.add(time.perf_counter() - began)
    else:
        series.fail(failure)


async def _finished(client: Client, workflow_id: str) -> None:
    with contextlib.suppress(TimeoutError, WorkflowFailureError, RPCError):
        await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), SETTLE_SECONDS)


def _server_side(rounds: StartRounds, before: Samples, after: Samples) -> None:
    rounds.server = {kind: _http_mean(after, before, *route) for kind, route in ROUTES.items()}
    rounds.rpc = {rpc: _rpc_mean(after, before, rpc) for rpc in RPCS}


def _http_mean(after: Samples, before: Samples, method: str, route: str) -> Mean:
    name = "adx_http_request_duration_seconds"
    labels = {"service": "api", "method": method, "route": route}
    count = delta(after, before, f"{name}_count", **labels)
    seconds = delta(after, before, f"{name}_sum", **labels)
    return Mean(count, seconds / count * 1000 if count else float("nan"))


def _rpc_mean(after: Samples, before: Samples, operation: str) -> Mean:
    count = delta(after, before, "temporal_request_latency_count", operation=operation)
    seconds = delta(after, before, "temporal_request_latency_sum", operation=operation)
    return Mean(count, seconds / count * 1000 if count else float("nan"))


async def _timed(series: Series, action: Callable[[], Awaitable[T]]) -> T:
    began = time.perf_counter()
    value = await action()
    series.add(time.perf_counter() - began)
    return value


async def steps(
    settings: Settings, api_client: Client, body: Callable[[str], dict[str, Any]]
) -> dict[str, Series]:
    """Each step of the tenants route's 202, timed on its own, in rounds."""
    series = {step: Series(step) for step in STEPS}
    token = mint_token(
        settings,
        user_id=str(uuid.uuid4()),
        tenant_id=PLATFORM_TENANT_ID,
        roles=[Role.PLATFORM_ADMIN],
    )
    bare = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    engine = create_engine(settings)
    sessions = create_sessions(engine)
    deadline = time.monotonic() + STEP_BUDGET_SECONDS
    tag = uuid.uuid4().hex[:6]

    unpolled = UnpolledStarts()

    try:
        for index in range(STEP_ITERATIONS):
            if time.monotonic() >= deadline:
                break

            async def verify() -> Any:
                return verify_token(settings, token)

            async def validate(index: int = index) -> CreateTenantIn:
                return CreateTenantIn.model_validate(body(f"bstep-{tag}-{index:05d}"))

            await _timed(series[TOKEN_CHECK], verify)
            parsed = await _timed(series[BODY], validate)

            async def lookup(slug: str = parsed.slug) -> Any:
                async with sessions() as session:
                    return await tenant_id_for_slug(session, slug)

            async def select_one() -> Any:
                async with sessions() as session:
                    return await session.scalar(text("SELECT 1"))

            async def system_info() -> Any:
                return await api_client.workflow_service.get_system_info(GetSystemInfoRequest())

            # Alternate the order, so neither client always goes first.
            clients = [(START_API_CLIENT, api_client), (START_BARE_CLIENT, bare)]
            if index % 2:
                clients.reverse()
            await _timed(series[LOOKUP], lookup)
            await _timed(series[SELECT_ONE], select_one)
            for step, client in clients:

                async def run_start(
                    client: Client = client, parsed: CreateTenantIn = parsed, index: int = index
                ) -> Any:
                    return await unpolled.start(client, parsed, index)

                await _timed(series[step], run_start)
            await _timed(series[SYSTEM_INFO], system_info)
    finally:
        await engine.dispose()
        await unpolled.terminate(api_client)
    return series


class UnpolledStarts:
    """Starts of a workflow that no worker runs, timed for what the start alone costs,
    with the same argument, search attributes and memo as the tenants route's start."""

    def __init__(self) -> None:
        self._tag = uuid.uuid4().hex[:6]
        self._started: list[str] = []

    async def start(self, client: Client, parsed: CreateTenantIn, index: int) -> Any:
        workflow_id = f"bench-unpolled-{self._tag}-{len(self._started):05d}"
        self._started.append(workflow_id)
        tenant_id = str(uuid.uuid4())
        return await client.start_workflow(
            _UNPOLLED_WORKFLOW,
            TenantCreationRequest(
                tenant_id=tenant_id,
                slug=parsed.slug,
                display_name=parsed.display_name,
                plan=parsed.plan,
                admin=TenantAdmin(email=parsed.admin.email, name=parsed.admin.name),
                requested_by=str(index),
            ),
            id=workflow_id,
            task_queue=_UNPOLLED_QUEUE,
            search_attributes=search_attributes(PLATFORM_TENANT_ID, uuid.uuid4().hex),
            memo={"subject_tenant_id": tenant_id, "requested_by": str(index)},
        )

    def call(self, client: Client, body: Callable[[str], dict[str, Any]]) -> load.Call:
        """A round's call: one start with ``client``."""

        async def call(index: int) -> str | None:
            parsed = CreateTenantIn.model_validate(body(f"bstart-{self._tag}-{index:05d}"))
            await self.start(client, parsed, index)
            return None

        return call

    async def terminate(self, client: Client) -> None:
        """Nothing runs them; they would stay running forever."""
        for workflow_id in self._started:
            with contextlib.suppress(RPCError):  # a start that failed left nothing behind
                await client.get_workflow_handle(workflow_id).terminate("bench: timed only")
        self._started.clear()
