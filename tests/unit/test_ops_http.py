"""Readiness reports each check by name and fails closed without leaking details."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from adx_core.ops_http import add_ops_routes


async def test_readiness_names_the_failing_check() -> None:
    async def ok() -> None:
        return None

    async def broken() -> None:
        raise ConnectionRefusedError("postgresql://app:secret@db/adx refused")

    async def slow() -> None:
        await asyncio.sleep(10)

    registry = CollectorRegistry()
    Counter("adx_test_total", "a test counter", registry=registry).inc()
    app = web.Application()
    add_ops_routes(app, registry, {"ok": ok, "database": broken, "temporal": slow})
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["checks"] == {
            "ok": "ok",
            "database": "ConnectionRefusedError",
            "temporal": "timeout",
        }
        assert "secret" not in await response.text()
        assert (await client.get("/healthz")).status == 200
        metrics = await client.get("/metrics")
        assert "adx_test_total 1.0" in await metrics.text()
