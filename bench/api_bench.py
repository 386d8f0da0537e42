"""API benchmarks (issue 6): the time to 202, a workflow under ``Prefer: wait`` against the
same operation done directly, and 1,000 SSE subscribers on one API process.

Against the bench's own stack (bench.stack): ``adx api``, the tenants worker and the users
worker (``python -m adx_cli worker users``), each a process of its own, plus the bench API
(``python -m bench.api_server``): the API built with ``create_app`` and one bench-only
route, with a worker for the bench's workflows in the same process (eager workflow start
needs the worker on the client that starts the workflow). Every API process runs with
``ADX_RATE_LIMIT_REQUESTS=0``: the per-tenant limit (1,200 a minute by default) would
refuse the load, and it is not what is measured.

The callers: a platform admin (tenants), and the admin of a tenant on the enterprise plan
seeded through the repositories (users, groups, and the operations followed over SSE).
Each part records its own failure and the next part still runs.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
from temporalio.client import Client
from tests.support.processes import settings_env

from adx_cli.devstack.net import free_port
from adx_core.auth import Role
from adx_core.temporal.client import connect
from bench import api_sse, api_start, api_wait, callers, load, stack
from bench.api_client import Caller
from bench.api_results import ApiResults, SsePart
from bench.parts import run_part
from bench.procstat import Meter

EXTRA_ENV = {"ADX_RATE_LIMIT_REQUESTS": "0"}
WAIT_SECONDS = 30
WARMUP = 3
DRAIN_BUDGET_SECONDS = 45.0
# What still runs after a part: every provisioned tenant keeps its monitoring workflow.
BACKLOG = "ExecutionStatus='Running' AND WorkflowType != 'tenant_monitoring_workflow'"


async def measure(st: stack.Stack, results: ApiResults) -> None:
    began = time.monotonic()
    await stack.start_roles(st, EXTRA_ENV)
    env = {**settings_env(st.settings), **EXTRA_ENV}
    port = free_port()
    users_worker: stack.Child | None = None
    bench_api: stack.Child | None = None
    try:
        started = await asyncio.gather(
            stack.start_worker(st, "users", env),
            stack.start_process(
                st,
                "bench-api",
                [sys.executable, "-m", "bench.api_server"],
                {**env, "ADX_API_HOST": "127.0.0.1", "ADX_API_PORT": str(port)},
                f"http://127.0.0.1:{port}/readyz",
            ),
            return_exceptions=True,
        )
        # Both are stopped below, even when only one of them started.
        users_worker, bench_api = (c if isinstance(c, stack.Child) else None for c in started)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        assert users_worker is not None
        assert bench_api is not None
        results.seconds["api, workers and bench api start"] = time.monotonic() - began
        await _parts(st, f"http://127.0.0.1:{port}", bench_api, users_worker, results)
    finally:
        for name, child in (("bench api", bench_api), ("users worker", users_worker)):
            if child is not None:
                results.exit_codes[name] = child.stop()
        results.exit_codes.update(stack.stop_roles(st))


async def _parts(
    st: stack.Stack,
    bench_url: str,
    bench_api: stack.Child,
    users_worker: stack.Child,
    results: ApiResults,
) -> None:
    client = await connect(st.settings, identity="adx-bench-api-client")
    tenant_id, admin_token = await callers.seeded_member(st.settings, "admin", Role.TENANT_ADMIN)
    platform_token = callers.platform_admin_token(st.settings)
    tag = secrets.token_hex(3)
    api = st.child("api")
    logs = [api, bench_api]
    assert st.temporal.pid is not None
    assert st.postgres.pid is not None
    pids = {
        "api": api.pid,
        "tenants worker": st.child("worker").pid,
        "users worker": users_worker.pid,
        "bench api": bench_api.pid,
        "temporal": st.temporal.pid,
        "postgres": st.postgres.pid,
    }
    meter = Meter()
    for name, pid in pids.items():
        meter.watch(name, pid, with_children=name == "postgres")
    meter.watch("bench client", os.getpid())
    timeout = aiohttp.ClientTimeout(total=load.REQUEST_TIMEOUT + WAIT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tenants = load.Api(session, st.api_url, platform_token, run_tag=tag)
        on_api = Caller(session, st.api_url, admin_token, tag)
        on_bench = Caller(session, bench_url, admin_token, tag)

        async def part(name: str, run: Callable[[], Awaitable[None]]) -> bool:
            return await run_part(results, meter, logs, "api", name, run)

        async def warm_up() -> None:
            await _warm_up(tenants, on_api)

        async def paced() -> None:
            await api_start.measure_paced(tenants, on_api, session, client, results.start.paced)

        async def loaded() -> None:
            await api_start.measure_loaded(tenants, on_api, session, client, results.start.loaded)

        async def steps() -> None:
            results.start.steps = await api_start.steps(st.settings, client, tenants.body)

        async def drain() -> None:
            await _drain(client)

        async def wait() -> None:
            await api_wait.measure(on_bench, on_api, session, results.wait)

        async def sse() -> None:
            results.sse = SsePart(
                plan=api_sse.plan_for(0),
                operations=api_sse.OPERATIONS,
                subscribers=api_sse.OPERATIONS * api_sse.PER_OPERATION,
            )
            await api_sse.measure(
                st.settings, client, st.api_url, tenant_id, admin_token, meter, results.sse
            )

        if not await part("warm-up", warm_up):
            return
        await part("time to 202, one at a time", paced)
        await part("where the 202 goes", steps)
        await part("time to 202, back to back", loaded)
        await part("backlog drain", drain)
        await part("direct and workflow, Prefer: wait", wait)
        await part("backlog drain, again", drain)
        if await part("SSE, 1,000 subscribers", sse) and results.sse is not None:
            sse_part = results.sse

            async def unwatched() -> None:
                await api_sse.measure_unwatched(st.settings, client, tenant_id, meter, sse_part)

            await part("SSE control, nobody following", unwatched)


async def _warm_up(tenants: load.Api, admin: Caller) -> None:
    """Pools, imports on first use, the first tasks of each workflow type; not counted.
    Fails the part if a workflow does not get through."""
    for index in range(WARMUP):
        status, payload = await tenants.create_tenant(tenants.slug("api-warm", index), WAIT_SECONDS)
        if status != 200 or payload.get("status") != "succeeded":
            raise RuntimeError(f"a warm-up tenant failed: HTTP {status} {payload.get('error')}")
        email = f"{admin.name('warm', index)}@bench.example.com"
        status, payload, _ = await admin.post(
            "/v1/users", {"email": email, "name": "Bench"}, {"Prefer": f"wait={WAIT_SECONDS}"}
        )
        if status != 200 or payload.get("status") != "succeeded":
            raise RuntimeError(f"a warm-up user failed: HTTP {status} {payload.get('error')}")
        status, payload, _ = await admin.post("/v1/groups", {"name": admin.name("warm", index)})
        if status != 201:
            raise RuntimeError(f"a warm-up group failed: HTTP {status} {payload.get('title')}")


async def _drain(client: Client) -> None:
    """Wait (bounded) until the workflows the last part started have run."""
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    while (await client.count_workflows(BACKLOG)).count > 0:
        if time.monotonic() >= deadline:
            raise RuntimeError(f"workflows still running after {DRAIN_BUDGET_SECONDS:.0f} s")
        await asyncio.sleep(0.2)
