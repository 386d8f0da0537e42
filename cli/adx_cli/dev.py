"""``adx dev``: the whole stack in one foreground command.

PostgreSQL and the Temporal dev server run as children of this process; the workers and
the API run as separate processes, exactly as in production, under a small supervisor.
State lives under ``.adx/``: a second ``adx dev`` reuses the database, the Temporal
history and the generated secrets. Ctrl-C stops everything, newest first.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from adx_cli.devstack.clamd import DevScanner, find_clamd
from adx_cli.devstack.mail import DevMailServer
from adx_cli.devstack.net import is_http_ready
from adx_cli.devstack.postgres import EmbeddedPostgres
from adx_cli.devstack.supervisor import Supervisor
from adx_cli.devstack.temporal import TemporalDevServer
from adx_core.auth import Role, mint_token
from adx_core.contracts import search
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.db.migrate import upgrade
from adx_core.settings import Settings, load_settings
from adx_workers.runner import DOMAINS

DEV_USER_EMAIL = "admin@adx.localhost"


@dataclass(frozen=True)
class DevPorts:
    api: int
    temporal: int
    ui: int
    postgres: int
    # The development mail server; notifications land in .adx/mail/.
    smtp: int = 8025
    # Each worker's HTTP port (/healthz, /readyz, /metrics), by worker name; a worker not
    # named here gets the API port + 10 + its place in the sorted names (8091, 8092, ...).
    workers: dict[str, int] = field(default_factory=dict)

    def worker(self, name: str, place: int) -> int:
        return self.workers.get(name, self.api + 10 + place)


def dev_secrets(home: Path) -> dict[str, str]:
    """Secrets generated on the first run and kept in ``.adx/secrets.env`` (mode 0600)."""
    path = home / "secrets.env"
    if path.exists():
        pairs = (line.partition("=") for line in path.read_text().splitlines())
        return {key: value for key, sep, value in pairs if sep}
    values = {
        "ADX_JWT_SECRET": secrets.token_urlsafe(48),
        "ADX_CODEC_KEYS": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "ADX_DEV_POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "ADX_DEV_APP_PASSWORD": secrets.token_urlsafe(24),
    }
    home.mkdir(parents=True, exist_ok=True)
    _write_env(path, values)
    return values


def _write_env(path: Path, values: dict[str, str]) -> None:
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def stack_env(home: Path, ports: DevPorts, postgres: EmbeddedPostgres) -> dict[str, str]:
    values = dev_secrets(home)
    return {
        "ADX_ENV": "development",
        "ADX_LOG_FORMAT": "console",
        "ADX_JWT_SECRET": values["ADX_JWT_SECRET"],
        "ADX_CODEC_KEYS": values["ADX_CODEC_KEYS"],
        "ADX_DATABASE_URL": postgres.dsn(
            "adx",
            user="adx_app",
            password=values["ADX_DEV_APP_PASSWORD"],
            driver="postgresql+asyncpg",
        ),
        "ADX_MIGRATION_DATABASE_URL": postgres.dsn("adx", driver="postgresql+asyncpg"),
        "ADX_TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal}",
        "ADX_STORAGE_ROOT": str((home / "storage").absolute()),
        "ADX_API_PORT": str(ports.api),
        "ADX_SMTP_HOST": "127.0.0.1",
        "ADX_SMTP_PORT": str(ports.smtp),
        # The UI calls the codec server from the browser, from its own origin.
        "ADX_CODEC_ALLOWED_ORIGINS": os.environ.get(
            "ADX_CODEC_ALLOWED_ORIGINS", f"http://127.0.0.1:{ports.ui},http://localhost:{ports.ui}"
        ),
    }


def run_dev(home: Path, ports: DevPorts) -> int:
    unknown = sorted(set(ports.workers) - set(DOMAINS))
    if unknown:
        raise ValueError(
            f"no worker named {', '.join(unknown)}; known: {', '.join(sorted(DOMAINS))}"
        )
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    secrets_ = dev_secrets(home)
    postgres = EmbeddedPostgres(
        home / "pg",
        port=ports.postgres,
        password=secrets_["ADX_DEV_POSTGRES_PASSWORD"],
        log_path=home / "postgres.log",
    )
    temporal = TemporalDevServer(
        db_file=home / "temporal.db",
        port=ports.temporal,
        ui_port=ports.ui,
        search_attributes=search.registration(),
        log_path=home / "temporal.log",
        # The UI decrypts payloads through the API's codec server.
        extra_args=["--ui-codec-endpoint", f"http://127.0.0.1:{ports.api}/codec"],
    )
    mail = DevMailServer(home / "mail", ports.smtp)
    scanner = DevScanner(home / "clamd", binary=find_clamd())
    try:
        _step("starting the mail server", mail.start)
        _step("starting PostgreSQL", postgres.start)
        postgres.create_database("adx")
        _step("starting Temporal", temporal.start)
        env = stack_env(home, ports, postgres)
        env.update(scanner.env())
        os.environ.update(env)
        settings = load_settings()
        # For `adx token`, `adx migrate` and friends in another terminal.
        _write_env(home / "dev.env", env)
        _step("starting the virus scanner", lambda: scanner.start(settings.scan_max_bytes))
        _step("migrating the database", lambda: asyncio.run(upgrade(settings)))
        supervisor = _supervisor(env, ports, settings, started)
        return supervisor.run_sync()
    finally:
        scanner.stop()
        temporal.stop()
        postgres.stop()
        mail.stop()


def _supervisor(
    env: dict[str, str], ports: DevPorts, settings: Settings, started: float
) -> Supervisor:
    # Longer than a worker's 20 s graceful shutdown, so running activities can finish.
    supervisor = Supervisor(stop_timeout=30)
    for place, name in enumerate(sorted(DOMAINS), start=1):
        worker_port = ports.worker(name, place)
        supervisor.add(
            f"worker-{name}",
            [sys.executable, "-m", "adx_cli", "worker", name],
            env={**env, "ADX_WORKER_HTTP_PORT": str(worker_port)},
            ready=_http_ready(f"http://127.0.0.1:{worker_port}/readyz"),
        )
    api_ready = f"http://127.0.0.1:{ports.api}/readyz"
    supervisor.add(
        "api",
        [sys.executable, "-m", "adx_cli", "api"],
        env=env,
        ready=_announce_when(_http_ready(api_ready), ports, settings, started),
    )
    return supervisor


def _http_ready(url: str) -> Callable[[], bool]:
    return lambda: is_http_ready(url)


def _announce_when(
    probe: Callable[[], bool], ports: DevPorts, settings: Settings, started: float
) -> Callable[[], bool]:
    def ready() -> bool:
        if not probe():
            return False
        token = mint_token(
            settings,
            user_id=_dev_user_id(),
            tenant_id=PLATFORM_TENANT_ID,
            roles=[Role.PLATFORM_ADMIN],
            email=DEV_USER_EMAIL,
            ttl_seconds=7 * 24 * 3600,
        )
        click.echo(_banner(ports, token, time.monotonic() - started), err=True)
        return True

    return ready


def _dev_user_id() -> str:
    from adx_cli.tokens import resolve_user

    return resolve_user(DEV_USER_EMAIL)[0]


def _banner(ports: DevPorts, token: str, elapsed: float) -> str:
    api = f"http://127.0.0.1:{ports.api}"
    return f"""
  ADX Core is ready ({elapsed:.1f} s)

    API          {api}   (OpenAPI: {api}/openapi.json)
    Temporal UI  http://127.0.0.1:{ports.ui}
    Temporal     127.0.0.1:{ports.temporal}

  A platform-admin token, valid for 7 days:

    export ADX_TOKEN={token}

  Try:
    curl -s -X POST {api}/v1/tenants -H "Authorization: Bearer $ADX_TOKEN" \\
      -H 'Content-Type: application/json' -H 'Prefer: wait=10' \\
      -d '{{"slug": "acme", "display_name": "Acme Inc", "plan": "pro",
           "admin": {{"email": "ada@acme.example", "name": "Ada"}}}}'

  Ctrl-C stops everything.
"""


def _step(what: str, action: Callable[[], object]) -> None:
    click.echo(f"adx | {what}...", err=True)
    action()
