"""``/healthz``, ``/readyz`` and ``/metrics``: served by every ADX process, API and workers.

``/healthz`` says the process is alive; ``/readyz`` runs the readiness checks (database,
Temporal, the worker running) and answers 503 with the failing ones, so Kubernetes takes
the process out of rotation without restarting it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[None]]

_CHECK_TIMEOUT = 3.0


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def readiness_handler(
    checks: Mapping[str, ReadinessCheck],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def readyz(_: web.Request) -> web.Response:
        names = list(checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(checks[name](), _CHECK_TIMEOUT) for name in names),
            return_exceptions=True,
        )
        report = {
            name: "ok" if not isinstance(result, BaseException) else _reason(result)
            for name, result in zip(names, results, strict=True)
        }
        ready = all(value == "ok" for value in report.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": report},
            status=200 if ready else 503,
        )

    return readyz


def _reason(exc: BaseException) -> str:
    # Readiness output is public: say what failed, never connection strings or secrets.
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(_: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def add_ops_routes(
    app: web.Application, registry: CollectorRegistry, checks: Mapping[str, ReadinessCheck]
) -> None:
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", readiness_handler(checks))
    app.router.add_get("/metrics", metrics_handler(registry))
