"""``adx``: run a role, migrate, mint a token, or run the whole stack with ``adx dev``."""

from __future__ import annotations

import asyncio

import click

from adx_cli.ops import ops
from adx_cli.rollout import rollout
from adx_cli.runtime import run_role, settings_or_exit
from adx_cli.temporal import temporal
from adx_core.auth import Role, mint_token


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """ADX Core: a Temporal-first backend fleet for tenants, users and files."""


main.add_command(ops)
main.add_command(rollout)
main.add_command(temporal)


@main.command()
def api() -> None:
    """Serve the HTTP API (ADX_API_HOST:ADX_API_PORT)."""
    from adx_api.server import serve

    run_role("api", serve)


@main.command()
@click.argument("name")
def worker(name: str) -> None:
    """Run the worker for one domain's task queue (e.g. ``tenants``)."""
    from adx_workers.runner import DOMAINS, serve

    if name not in DOMAINS:
        raise click.BadParameter(f"choose one of: {', '.join(sorted(DOMAINS))}", param_hint="NAME")
    run_role(f"worker-{name}", lambda settings, stop: serve(settings, name, stop))


@main.command()
def operator() -> None:
    """Run the operator for Tenant and StorageMigration resources (kubeconfig or in-cluster)."""
    from adx_operator.runner import serve

    run_role("operator", serve)


@main.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision.")
def migrate(revision: str) -> None:
    """Apply the database migrations (as ADX_MIGRATION_DATABASE_URL's owner role)."""
    from adx_core.db.migrate import MigrationRoleError, upgrade

    settings = settings_or_exit()
    try:
        asyncio.run(upgrade(settings, revision))
    except MigrationRoleError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"database migrated to {revision}", err=True)


@main.command()
@click.option("--tenant", "tenant", required=True, help="Tenant id or slug.")
@click.option("--user", "user", required=True, help="User id or e-mail address.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice([r.value for r in Role]),
    default=[Role.MEMBER.value],
    show_default=True,
    help="Repeat for several roles.",
)
@click.option("--ttl", "ttl_seconds", type=click.IntRange(60, 30 * 24 * 3600), default=None)
def token(tenant: str, user: str, roles: tuple[str, ...], ttl_seconds: int | None) -> None:
    """Mint a bearer token; prints only the token."""
    from adx_cli.tokens import resolve_tenant, resolve_user

    settings = settings_or_exit()
    if settings.jwt_secret is None:
        raise click.ClickException("ADX_JWT_SECRET is not set (run `adx dev` once, or export it)")
    tenant_id = resolve_tenant(settings, tenant)
    user_id, email = resolve_user(user)
    click.echo(
        mint_token(
            settings,
            user_id=user_id,
            tenant_id=tenant_id,
            roles=[Role(r) for r in roles],
            email=email,
            ttl_seconds=ttl_seconds,
        )
    )


@main.command()
@click.option("--home", type=click.Path(file_okay=False), default=".adx", show_default=True)
@click.option("--api-port", type=int, default=8080, show_default=True)
@click.option("--temporal-port", type=int, default=7233, show_default=True)
@click.option("--ui-port", type=int, default=8233, show_default=True)
@click.option("--postgres-port", type=int, default=55432, show_default=True)
@click.option("--smtp-port", type=int, default=8025, show_default=True)
@click.option(
    "--worker-port",
    "worker_ports",
    multiple=True,
    metavar="NAME=PORT",
    help="A worker's HTTP port, such as files=8091 (default: API port + 10 + n).",
)
def dev(
    home: str,
    api_port: int,
    temporal_port: int,
    ui_port: int,
    postgres_port: int,
    smtp_port: int,
    worker_ports: tuple[str, ...],
) -> None:
    """Run the whole stack in the foreground: Temporal, PostgreSQL, workers and the API."""
    from pathlib import Path

    try:
        from adx_cli.dev import DevPorts, run_dev
    except ImportError as err:  # the image installs no dev stack
        raise click.ClickException(
            f"adx dev needs the development extra ({err.name} is missing): "
            "pip install 'adx-core[dev]', or run `make dev`"
        ) from None

    workers: dict[str, int] = {}
    for item in worker_ports:
        name, sep, port = item.partition("=")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise click.BadParameter(f"{item!r}: write NAME=PORT", param_hint="--worker-port")
        workers[name] = int(port)
    ports = DevPorts(api_port, temporal_port, ui_port, postgres_port, smtp_port, workers)
    raise SystemExit(run_dev(Path(home), ports))
