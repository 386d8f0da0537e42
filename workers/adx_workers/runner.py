"""Run one worker process: a Temporal worker for a domain plus its HTTP side.

The HTTP side serves /healthz, /readyz and /metrics (the SDK's metrics included). On stop
the worker shuts down gracefully: it stops polling, lets running activities finish within
the grace period, and only then closes the database pool they use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import REGISTRY
from sqlalchemy import text
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.logging import get_logger
from adx_core.metrics import temporal_runtime
from adx_core.ops_http import add_ops_routes
from adx_core.settings import Settings
from adx_core.temporal.client import connect
from adx_workers.files.worker import build_worker as build_files_worker
from adx_workers.resources import WorkerResources
from adx_workers.tenants.worker import build_worker as build_tenants_worker
from adx_workers.users.worker import build_worker as build_users_worker

log = get_logger(__name__)

WorkerFactory = Callable[[Client, WorkerResources, str], Worker]

DOMAINS: dict[str, WorkerFactory] = {
    "tenants": build_tenants_worker,
    "users": build_users_worker,
    "files": build_files_worker,
}


class UnknownWorkerError(ValueError):
    pass


def create_http_app(client: Client, worker: Worker, resources: WorkerResources) -> web.Application:
    async def database() -> None:
        async with resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def temporal() -> None:
        await client.service_client.check_health()

    async def worker_running() -> None:
        if not worker.is_running:
            raise RuntimeError("worker is not running")

    app = web.Application()
    add_ops_routes(
        app, REGISTRY, {"database": database, "temporal": temporal, "worker": worker_running}
    )
    return app


async def serve(
    settings: Settings,
    name: str,
    stop: asyncio.Event,
    *,
    http_port: int | None = None,
) -> None:
    """Serve ``name``'s task queue until ``stop`` is set."""
    factory = DOMAINS.get(name)
    if factory is None:
        raise UnknownWorkerError(f"unknown worker {name!r}; known: {', '.join(sorted(DOMAINS))}")
    client = await connect(settings, runtime=temporal_runtime(), identity=f"adx-worker-{name}")
    resources = WorkerResources.open(settings)
    worker = factory(client, resources, settings.task_queue(name))
    runner = web.AppRunner(create_http_app(client, worker, resources), access_log=None)
    await runner.setup()
    port = settings.worker_http_port if http_port is None else http_port
    site = web.TCPSite(runner, settings.worker_http_host, port)
    await site.start()
    log.info("worker started", worker=name, task_queue=settings.task_queue(name), http_port=port)
    try:
        async with worker:
            await stop.wait()
            log.info("worker stopping", worker=name)
    finally:
        await runner.cleanup()
        await resources.close()
    log.info("worker stopped", worker=name)
