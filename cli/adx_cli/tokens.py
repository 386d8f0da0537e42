"""Resolve the ``--tenant`` and ``--user`` of ``adx token``."""

from __future__ import annotations

import asyncio
import uuid

import click

from adx_core.contracts.tenants import PLATFORM_TENANT_ID, PLATFORM_TENANT_SLUG
from adx_core.db.engine import create_engine, create_sessions
from adx_core.db.repositories import tenant_id_for_slug
from adx_core.settings import Settings

# Users named by e-mail get a stable id derived from it, so the same address always maps
# to the same subject, before and after the user row exists.
USER_NAMESPACE = uuid.UUID("6f1c1d8e-3b0a-4c55-9a3e-2f7f1c1e0ad1")


def resolve_tenant(settings: Settings, tenant: str) -> str:
    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        pass
    if tenant == PLATFORM_TENANT_SLUG:
        return PLATFORM_TENANT_ID
    found = asyncio.run(_lookup_slug(settings, tenant))
    if found is None:
        raise click.ClickException(f"no tenant with slug {tenant!r}")
    return found


async def _lookup_slug(settings: Settings, slug: str) -> str | None:
    engine = create_engine(settings)
    try:
        async with create_sessions(engine)() as session:
            tenant_id = await tenant_id_for_slug(session, slug)
    except OSError as err:
        raise click.ClickException(
            f"cannot reach the database to resolve {slug!r}: {err}"
        ) from None
    finally:
        await engine.dispose()
    return str(tenant_id) if tenant_id else None


def resolve_user(user: str) -> tuple[str, str | None]:
    """``(user id, e-mail or None)``."""
    try:
        return str(uuid.UUID(user)), None
    except ValueError:
        pass
    email = user.strip().lower()
    if "@" not in email or len(email) > 320:
        raise click.BadParameter("give a user id (UUID) or an e-mail address", param_hint="--user")
    return str(uuid.uuid5(USER_NAMESPACE, email)), email
