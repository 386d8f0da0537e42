"""``adx operator``: the kopf operator with its probes, against the current kubeconfig or
the in-cluster service account.

Peering: with ADX_OPERATOR_PEERING set, every replica joins that peering (a
ClusterKopfPeering when it watches the whole cluster, a KopfPeering per namespace
otherwise), each with a random priority, so that exactly one of them acts and the others
stand by (kopf pauses an operator that sees a peer of higher or equal priority). kopf does
not create the peering object: whoever installs the operator does (the chart), and until
it exists the operator waits. Empty (the default) runs standalone, for one replica.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import kopf
from aiohttp import web
from prometheus_client import REGISTRY

from adx_core.logging import get_logger
from adx_core.metrics import temporal_runtime
from adx_core.ops_http import add_ops_routes
from adx_core.settings import Settings
from adx_core.temporal.client import connect
from adx_operator.context import OperatorContext, Pacing
from adx_operator.registry import build_registry

log = get_logger(__name__)


@dataclass(frozen=True)
class RunOptions:
    # None: a random priority, so that two replicas never tie (a tie pauses both).
    priority: int | None = None
    http_port: int | None = None


class _QuietTimers(logging.Filter):
    """kopf logs every timer run at INFO: one line per resource per poll, even idle.
    Failures still pass (kopf logs them at WARNING and above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            record.levelno <= logging.INFO
            and message.startswith("Timer ")
            and message.endswith("succeeded.")
        )


_QUIET_TIMERS = _QuietTimers()


def pacing(settings: Settings) -> Pacing:
    return Pacing(
        poll_seconds=settings.operator_poll_seconds,
        resync_seconds=settings.operator_resync_seconds,
    )


async def serve(settings: Settings, stop: asyncio.Event, options: RunOptions | None = None) -> None:
    options = options or RunOptions()
    logging.getLogger("kopf.objects").addFilter(_QUIET_TIMERS)  # once: the same object
    client = await connect(settings, runtime=temporal_runtime(), identity="adx-operator")
    ctx = OperatorContext(settings, client, pacing(settings))
    ready = asyncio.Event()

    async def kubernetes_watching() -> None:
        if not ready.is_set():
            raise RuntimeError("not watching yet")

    async def temporal_reachable() -> None:
        if not await client.service_client.check_health():
            raise RuntimeError("Temporal reports itself unhealthy")

    app = web.Application()
    add_ops_routes(
        app, REGISTRY, {"kubernetes": kubernetes_watching, "temporal": temporal_reachable}
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = settings.operator_http_port if options.http_port is None else options.http_port
    await web.TCPSite(runner, settings.operator_http_host, port).start()
    namespaces = settings.operator_namespaces
    log.info(
        "operator starting",
        namespaces=list(namespaces) or "all",
        peering=settings.operator_peering or "standalone",
        http_port=port,
    )
    try:
        await kopf.operator(
            registry=build_registry(ctx),
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=not settings.operator_peering,
            peering_name=settings.operator_peering or None,
            priority=options.priority
            if options.priority is not None
            else random.randint(1, 1_000_000),  # noqa: S311 - not a secret, a tie-breaker
            stop_flag=stop,
            ready_flag=ready,
        )
    finally:
        await runner.cleanup()
    log.info("operator stopped")
