"""``adx temporal setup``: prepare the Temporal namespace for ADX.

The chart runs it in a pre-install/pre-upgrade hook Job. Exit codes: 0 when every search
attribute ADX starts workflows with is in the namespace, 1 when one exists with another type
or Temporal refused the call (Temporal Cloud does: add them with tcld there).
"""

from __future__ import annotations

import asyncio

import click
from temporalio.service import RPCError

from adx_cli.runtime import settings_or_exit
from adx_core.contracts import search
from adx_core.temporal.client import connect
from adx_core.temporal.search_setup import (
    SearchAttributeSetupError,
    ensure_search_attributes,
    wanted,
)


@click.group()
def temporal() -> None:
    """Prepare the Temporal namespace ADX runs in."""


@temporal.command()
def setup() -> None:
    """Add ADX's search attributes to ADX_TEMPORAL_NAMESPACE where they are missing."""
    settings = settings_or_exit()

    async def work() -> list[str]:
        client = await connect(settings, identity="adx-temporal-setup")
        return await ensure_search_attributes(
            client, settings.temporal_namespace, wanted(search.ALL)
        )

    try:
        added = asyncio.run(work())
    except SearchAttributeSetupError as err:
        raise click.ClickException(str(err)) from None
    except RPCError as err:
        raise click.ClickException(
            f"Temporal refused to add search attributes ({err.status.name}: {err.message}); "
            "on Temporal Cloud add them with tcld and turn the chart's temporal.setup off"
        ) from None
    namespace = settings.temporal_namespace
    if added:
        click.echo(f"{namespace}: added search attributes {', '.join(added)}")
    else:
        click.echo(f"{namespace}: every search attribute is there")
