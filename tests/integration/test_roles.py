"""The API and worker roles run as they do in a container: serve until told to stop."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from adx_api.server import serve as serve_api
from adx_cli.devstack.net import free_port
from adx_core.settings import Settings
from adx_workers.runner import UnknownWorkerError
from adx_workers.runner import serve as serve_worker


async def get_until_ok(session: aiohttp.ClientSession, url: str, within: float = 30) -> str:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return await response.text()
        except aiohttp.ClientConnectionError:
            pass
        assert asyncio.get_running_loop().time() < deadline, f"{url} never answered 200"
        await asyncio.sleep(0.1)


async def test_worker_serves_probes_and_sdk_metrics_then_stops(settings: Settings) -> None:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve_worker(settings, "tenants", stop, http_port=port))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        await get_until_ok(session, f"{base}/healthz")
        ready = await get_until_ok(session, f"{base}/readyz")
        assert '"worker": "ok"' in ready
        assert '"database": "ok"' in ready
        deadline = asyncio.get_running_loop().time() + 30
        while "temporal_" not in (metrics := await get_until_ok(session, f"{base}/metrics")):
            assert asyncio.get_running_loop().time() < deadline, "no SDK metrics in /metrics"
            await asyncio.sleep(0.5)
        assert "# TYPE temporal_" in metrics
    stop.set()
    await asyncio.wait_for(task, 30)


async def test_unknown_worker_is_refused(settings: Settings) -> None:
    with pytest.raises(UnknownWorkerError, match="known: files, tenants, users"):
        await serve_worker(settings, "nope", asyncio.Event())


async def test_api_serves_until_stopped(settings: Settings) -> None:
    port = free_port()
    api_settings = settings.model_copy(update={"api_port": port})
    stop = asyncio.Event()
    task = asyncio.create_task(serve_api(api_settings, stop))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        ready = await get_until_ok(session, f"{base}/readyz")
        assert '"temporal": "ok"' in ready
        document = await get_until_ok(session, f"{base}/openapi.json")
        assert '"openapi": "3.1.0"' in document
        metrics = await get_until_ok(session, f"{base}/metrics")
        assert "adx_http_requests_total" in metrics
    stop.set()
    await asyncio.wait_for(task, 30)
