"""Start-up shared by every long-running role: settings, logging, tracing, signals."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from adx_core.logging import configure_logging
from adx_core.settings import Environment, Settings, SettingsError, load_settings
from adx_core.telemetry import configure_tracing, shutdown_tracing

DEV_ENV_FILE = Path(".adx/dev.env")


def load_dev_env(path: Path = DEV_ENV_FILE) -> None:
    """Outside production, pick up the secrets ``adx dev`` generated, so ``adx token`` and
    friends work in a second terminal. Variables already set win."""
    if os.environ.get("ADX_ENV", "development") != Environment.DEVELOPMENT.value:
        return  # tests and production are configured explicitly, never from a file
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("ADX_"):
            os.environ.setdefault(key.strip(), value.strip())


def settings_or_exit() -> Settings:
    load_dev_env()
    try:
        return load_settings()
    except SettingsError as err:
        raise click.ClickException(str(err)) from None


def run_role(role: str, main: Callable[[Settings, asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main`` until SIGINT or SIGTERM, which set the stop event for a clean shutdown."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings, role)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(settings, stop)

    try:
        asyncio.run(runner())
    finally:
        shutdown_tracing()
