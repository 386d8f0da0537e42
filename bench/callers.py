"""The callers a benchmark part drives the API as: one member of a freshly seeded
enterprise tenant, and a platform admin. Tokens last an hour, longer than any part."""

from __future__ import annotations

import uuid

from tests.support.tenancy import seed_tenant

from adx_core.auth import Role, mint_token
from adx_core.contracts.plans import Plan
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.db.engine import create_engine, create_sessions
from adx_core.settings import Settings

TOKEN_TTL = 3600


async def seeded_member(settings: Settings, name: str, role: Role) -> tuple[str, str]:
    """A new enterprise tenant with one member: (tenant id, the member's token)."""
    engine = create_engine(settings)
    try:
        tenant = await seed_tenant(
            create_sessions(engine), plan=Plan.ENTERPRISE, members={name: role}
        )
    finally:
        await engine.dispose()
    member = tenant.members[name]
    token = mint_token(
        settings,
        user_id=member.user_id,
        tenant_id=tenant.tenant_id,
        roles=[member.role],
        ttl_seconds=TOKEN_TTL,
    )
    return tenant.tenant_id, token


def platform_admin_token(settings: Settings) -> str:
    return mint_token(
        settings,
        user_id=str(uuid.uuid4()),
        tenant_id=PLATFORM_TENANT_ID,
        roles=[Role.PLATFORM_ADMIN],
        ttl_seconds=TOKEN_TTL,
    )
