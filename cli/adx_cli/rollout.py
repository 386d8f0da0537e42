"""``adx rollout``: drive Temporal Worker Versioning for the fleet's worker deployments.

The chart's post-install/post-upgrade hook Job runs ``adx rollout promote`` from the new
image: a refusal exits 1, which fails the hook, so ``helm upgrade --atomic`` (Helm 4:
``--rollback-on-failure``) restores the release while Temporal's routing stays as it was.
Exit codes: 0 done, 1 refused or failed, 3 (drain-status) not drained yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import click
from temporalio.client import Client
from temporalio.service import RPCError

from adx_cli.runtime import settings_or_exit
from adx_core.settings import Settings
from adx_core.temporal import deployments
from adx_core.temporal.client import connect

SERVICES = ("tenants", "files", "users")
T = TypeVar("T")

service_option = click.option(
    "--service", "service", type=click.Choice(SERVICES), required=True, help="The worker service."
)


def _run(work: Callable[[Settings, Client], Awaitable[T]]) -> T:
    settings = settings_or_exit()

    async def main() -> T:
        client = await connect(settings, identity="adx-rollout")
        return await work(settings, client)

    return asyncio.run(main())


def _workflows(service: str) -> Sequence[type]:
    """The workflows this image's worker for ``service`` registers: what the replay gate
    checks recent histories against."""
    from adx_workers.files.worker import WORKFLOWS as FILES
    from adx_workers.tenants.worker import workflows as tenants
    from adx_workers.users.worker import WORKFLOWS as USERS

    by_service: dict[str, Sequence[type]] = {
        "tenants": tenants(versioned=True),
        "files": FILES,
        "users": USERS,
    }
    return by_service[service]


@click.group()
def rollout() -> None:
    """Promote, ramp, roll back and drain worker builds (Temporal Worker Versioning)."""


@rollout.command()
@click.option("--service", "services", type=click.Choice(SERVICES), multiple=True)
def status(services: tuple[str, ...]) -> None:
    """Each deployment's current and ramping version, and every version's drainage."""
    from adx_workers.versioning import deployment_name

    async def work(settings: Settings, client: Client) -> None:
        for service in services or SERVICES:
            name = deployment_name(settings, service)
            state = await deployments.describe(client, name)
            if state is None:
                click.echo(f"{name}: no versioned worker has polled yet")
                continue
            ramp = (
                f", ramping {state.ramping_build_id} at {state.ramping_percent:g}%"
                if state.ramping_build_id
                else ""
            )
            click.echo(f"{name}: current {state.current_build_id or '-'}{ramp}")
            for version in state.versions:
                click.echo(f"  {version.build_id}: {version.drainage or 'active'}")

    _run(work)


@rollout.command()
@service_option
@click.option("--build-id", required=True, help="The version to promote.")
@click.option(
    "--strategy",
    type=click.Choice(["Manual", "AllAtOnce", "Progressive"]),
    default="AllAtOnce",
    show_default=True,
)
@click.option("--steps", default="10,50", show_default=True, help="Progressive: ramp percents.")
@click.option("--step-seconds", type=click.FloatRange(min=0), default=60.0, show_default=True)
@click.option("--max-failure-rate", type=click.FloatRange(0, 1), default=0.05, show_default=True)
@click.option(
    "--gate-workflow", default=None, help="A workflow type to run on the new version first."
)
@click.option("--pollers-timeout", type=click.FloatRange(min=1), default=120.0, show_default=True)
def promote(
    service: str,
    build_id: str,
    strategy: str,
    steps: str,
    step_seconds: float,
    max_failure_rate: float,
    gate_workflow: str | None,
    pollers_timeout: float,
) -> None:
    """Gate BUILD on replayed histories (and a gate workflow), then route traffic to it."""
    from adx_workers.rollout import Progressive, PromotionRefusedError, Strategy
    from adx_workers.rollout import promote as run_promotion

    try:
        percents = tuple(float(step) for step in steps.split(",") if step.strip())
    except ValueError:
        raise click.BadParameter(f"{steps!r}: write percents such as 10,50") from None
    if not percents or any(not 0 < p < 100 for p in percents) or list(percents) != sorted(percents):
        raise click.BadParameter("steps must increase, each above 0 and below 100")

    async def work(settings: Settings, client: Client) -> None:
        await run_promotion(
            client,
            settings,
            service,
            build_id,
            _workflows(service),
            strategy=Strategy(strategy),
            progressive=Progressive(percents, step_seconds, max_failure_rate),
            gate_workflow=gate_workflow,
            pollers_within=pollers_timeout,
            report=click.echo,
        )

    try:
        _run(work)
    except (PromotionRefusedError, TimeoutError, RPCError) as err:
        raise click.ClickException(str(err)) from None


@rollout.command()
@service_option
@click.option("--build-id", required=True)
@click.option(
    "--percent", type=click.FloatRange(0, 100, min_open=True, max_open=True), required=True
)
def ramp(service: str, build_id: str, percent: float) -> None:
    """Send PERCENT of new executions to BUILD (the rest to the current version)."""
    from adx_workers.versioning import deployment_name

    async def work(settings: Settings, client: Client) -> None:
        await deployments.set_ramping(client, deployment_name(settings, service), build_id, percent)

    _run(work)
    click.echo(f"{service}: ramping {build_id} at {percent:g}%")


@rollout.command()
@service_option
@click.option("--to", "to", default=None, help="The build to make current (default: the previous).")
def rollback(service: str, to: str | None) -> None:
    """Make the previous (or the given) version current again and stop any ramp."""
    from adx_workers.rollout import rollback as run_rollback

    async def work(settings: Settings, client: Client) -> str:
        return await run_rollback(client, settings, service, to)

    try:
        target = _run(work)
    except LookupError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{service}: {target} is current")


@rollout.command("drain-status")
@service_option
@click.option("--build-id", "build_ids", multiple=True, help="Only these versions.")
def drain_status(service: str, build_ids: tuple[str, ...]) -> None:
    """Whether the versions that are no longer current still have pinned executions open;
    exit 0 once every one named is drained (safe to remove), 3 otherwise."""
    from adx_workers.versioning import deployment_name

    async def work(settings: Settings, client: Client) -> deployments.DeploymentState | None:
        return await deployments.describe(client, deployment_name(settings, service))

    state = _run(work)
    if state is None:
        raise click.ClickException(f"no worker deployment for {service}")
    retired = [
        v
        for v in state.versions
        if v.build_id not in (state.current_build_id, state.ramping_build_id)
        and (not build_ids or v.build_id in build_ids)
    ]
    for version in retired:
        click.echo(f"{service} {version.build_id}: {_drainage(version)}")
    if any(_drainage(v) not in ("drained", "never current") for v in retired):
        raise SystemExit(3)


def _drainage(version: deployments.VersionState) -> str:
    """Drained (safe to remove), draining, or never current; a version that stopped being
    current a moment ago has no answer yet, which counts as not drained."""
    if version.drainage:
        return version.drainage
    return "never current" if not version.last_current else "draining (not checked yet)"
