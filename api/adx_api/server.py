"""Run the API until asked to stop."""

from __future__ import annotations

import asyncio

from aiohttp import web

from adx_api.app import create_app
from adx_core.logging import get_logger
from adx_core.settings import Settings

log = get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, settings.api_host, settings.api_port)
    await site.start()
    log.info("api started", host=settings.api_host, port=settings.api_port)
    try:
        await stop.wait()
    finally:
        # Stops accepting, lets in-flight requests finish, closes SSE streams.
        await runner.cleanup()
    log.info("api stopped")
