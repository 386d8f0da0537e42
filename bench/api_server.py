"""``python -m bench.api_server``: the API with one bench-only route, plus a worker for the
bench's workflows, in one process that shares one Temporal client.

Why a process of its own rather than a route in ``adx api``: eager workflow start hands
the workflow's first task back in the answer to StartWorkflowExecution, to a worker that
runs on *the same client* that started it. Only an API process that also runs the worker
can use it, so this one is built like ``adx api`` (``adx_api.app.create_app``, the same
middlewares, settings from ``ADX_*``, the same start-up as ``adx_cli.runtime.run_role``)
with the bench's worker beside it. ``POST /v1/groups``, the direct call it is compared
with, is served by this same process, so both sides of the comparison share a process,
its event loop and its pools.

``POST /bench/groups/{variant}`` with ``{"name": ...}`` creates a group through
``bench_group_workflow`` (bench.api_workflows) and answers as every workflow route does
(``adx_api.routes.common.operation_response``: 202, or 200 with the result under
``Prefer: wait``). Variants: ``activity``, ``local`` (a local activity), ``eager``
(eager start), ``eager-local``; ``eager-local-lean``, which answers from the result the
wait returned instead of describing the execution and reading its result again (what
operation_response could do); and ``eager-local-unsandboxed``, run by a second worker
without the workflow sandbox (what the sandbox costs a workflow this short).
``X-Bench-Eager`` says whether the server started the
workflow eagerly.

The worker also runs ``bench_ticker_workflow``, the operations the SSE benchmark follows.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionResponse
from temporalio.client import WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from adx_api.app import API_RPC_RETRY, create_app
from adx_api.keys import SETTINGS, TEMPORAL, claims_of, context_of
from adx_api.operations import Operation, Operations, search_attributes
from adx_api.problems import ProblemError
from adx_api.routes.common import operation_response, prefer_wait, read_json, require_permission
from adx_api.routes.groups import GroupIn
from adx_core.contracts.permissions import GROUPS_MANAGE
from adx_core.db.engine import create_engine, create_sessions
from adx_core.logging import get_logger
from adx_core.metrics import temporal_runtime
from adx_core.settings import Settings
from adx_core.temporal.client import connect
from adx_workers.sandbox import workflow_runner
from bench.api_activities import GroupActivities
from bench.api_workflows import (
    GROUP_WORKFLOW,
    TASK_QUEUE,
    BenchGroupWorkflow,
    BenchTickerWorkflow,
    GroupRequest,
)

log = get_logger(__name__)

EAGER_HEADER = "X-Bench-Eager"


@dataclass(frozen=True)
class Variant:
    local: bool
    eager: bool
    lean: bool = False
    # Run by the worker without the workflow sandbox (its own task queue).
    unsandboxed: bool = False


VARIANTS = {
    "activity": Variant(local=False, eager=False),
    "local": Variant(local=True, eager=False),
    "eager": Variant(local=False, eager=True),
    "eager-local": Variant(local=True, eager=True),
    "eager-local-lean": Variant(local=True, eager=True, lean=True),
    "eager-local-unsandboxed": Variant(local=True, eager=True, unsandboxed=True),
}
UNSANDBOXED_QUEUE = f"{TASK_QUEUE}-unsandboxed"


def eagerly_started(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether StartWorkflowExecution's answer carried the first workflow task (the SDK
    keeps that answer only on the handle)."""
    response = handle._start_workflow_response
    return isinstance(response, StartWorkflowExecutionResponse) and response.HasField(
        "eager_workflow_task"
    )


async def create_group_by_workflow(request: web.Request) -> web.Response:
    variant = VARIANTS.get(request.match_info["variant"])
    if variant is None:
        raise ProblemError(404, "not-found", f"variants: {', '.join(VARIANTS)}")
    claims = claims_of(request)
    require_permission(claims, GROUPS_MANAGE)
    body = await read_json(request, GroupIn)
    client = request.app[TEMPORAL]
    correlation_id = context_of(request).correlation_id
    handle = await client.start_workflow(
        GROUP_WORKFLOW,
        GroupRequest(
            tenant_id=claims.tenant_id,
            name=body.name,
            actor_id=claims.user_id,
            correlation_id=correlation_id,
            local=variant.local,
        ),
        id=f"bench-group-{uuid.uuid4().hex}",
        task_queue=request.app[SETTINGS].task_queue(
            UNSANDBOXED_QUEUE if variant.unsandboxed else TASK_QUEUE
        ),
        search_attributes=search_attributes(claims.tenant_id, correlation_id),
        memo={"subject_tenant_id": claims.tenant_id, "requested_by": claims.user_id},
        request_eager_start=variant.eager,
    )
    wait = prefer_wait(request)
    if variant.lean and wait is not None:
        response = await _lean_answer(handle, wait)
    else:
        response = await operation_response(request, Operations(client), handle, GROUP_WORKFLOW)
    response.headers[EAGER_HEADER] = "true" if eagerly_started(handle) else "false"
    return response


async def _lean_answer(handle: WorkflowHandle[Any, Any], wait: int) -> web.Response:
    """The 200 built from the result the wait already has: no describe, no second read of
    the history. A wait that runs out falls back to the 202 of a started operation."""
    started = datetime.now(UTC)
    headers = {"Location": f"/v1/operations/{handle.id}", "Preference-Applied": f"wait={wait}"}
    try:
        result = await asyncio.wait_for(handle.result(), wait)
    except TimeoutError:
        operation = Operation.started(handle.id, GROUP_WORKFLOW, started)
        return web.json_response(operation.to_json(), status=202, headers=headers)
    operation = Operation(
        id=handle.id,
        type=GROUP_WORKFLOW,
        status="succeeded",
        progress={"step": "completed", "percent": 100, "counters": {}},
        result=result,
        error=None,
        created_at=started,
        updated_at=datetime.now(UTC),
    )
    return web.json_response(operation.to_json(), status=200, headers=headers)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    client = await connect(
        settings,
        runtime=temporal_runtime(),
        identity="adx-bench-api",
        retry_config=API_RPC_RETRY,
    )
    engine = create_engine(settings)  # the worker's own pool, as in a worker process
    worker = Worker(
        client,
        task_queue=settings.task_queue(TASK_QUEUE),
        workflows=[BenchGroupWorkflow, BenchTickerWorkflow],
        activities=GroupActivities(create_sessions(engine)).all(),
        workflow_runner=workflow_runner(),
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    # The same workflow without the sandbox: what the sandbox costs a short workflow.
    unsandboxed = Worker(
        client,
        task_queue=settings.task_queue(UNSANDBOXED_QUEUE),
        workflows=[BenchGroupWorkflow],
        activities=GroupActivities(create_sessions(engine)).all(),
        workflow_runner=UnsandboxedWorkflowRunner(),
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    app = create_app(settings, temporal=client)
    app.router.add_post("/bench/groups/{variant}", create_group_by_workflow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, settings.api_host, settings.api_port)
    try:
        async with worker, unsandboxed:
            await site.start()
            log.info("bench api started", host=settings.api_host, port=settings.api_port)
            await stop.wait()
    finally:
        await runner.cleanup()
        await engine.dispose()
    log.info("bench api stopped")


def main() -> None:
    from adx_cli.runtime import run_role

    run_role("bench-api", serve)


if __name__ == "__main__":
    main()
