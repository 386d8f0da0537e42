"""An active tenant with members, seeded straight through the repositories (no workflow),
for tests of the file service that need people with roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from adx_core.auth import Role, mint_token
from adx_core.contracts.permissions import DEFAULT_ROLE_PERMISSIONS
from adx_core.contracts.plans import PLANS, Plan
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.repositories import MembershipRepository, TenantRepository, TenantSetupRepository
from adx_core.settings import Settings


@dataclass
class Member:
    user_id: str
    email: str
    role: Role


@dataclass
class SeededTenant:
    tenant_id: str
    plan: Plan
    members: dict[str, Member] = field(default_factory=dict)

    def token(self, settings: Settings, name: str) -> str:
        member = self.members[name]
        return mint_token(
            settings, user_id=member.user_id, tenant_id=self.tenant_id, roles=[member.role]
        )

    def auth(self, settings: Settings, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(settings, name)}"}


async def seed_tenant(
    sessions: Sessions,
    *,
    plan: Plan = Plan.PRO,
    members: dict[str, Role] | None = None,
    provider: str = "local",
    settings: dict[str, object] | None = None,
) -> SeededTenant:
    """An active tenant on ``plan`` with its quotas, role permissions and ``members``
    (name -> role; each gets an e-mail ``<name>@<slug>.test``)."""
    tenant_id = uuid.uuid4()
    slug = f"t-{tenant_id.hex[:10]}"
    spec = PLANS[plan]
    wanted = members or {
        "admin": Role.TENANT_ADMIN,
        "alice": Role.MEMBER,
        "bob": Role.MEMBER,
        "vera": Role.VIEWER,
    }
    seeded = SeededTenant(tenant_id=str(tenant_id), plan=plan)
    async with tenant_session(sessions, tenant_id) as session:
        await TenantRepository(session).create(
            tenant_id=tenant_id,
            slug=slug,
            display_name=f"Tenant {slug}",
            plan=plan.value,
            status="active",
            storage_prefix=f"tenants/{tenant_id}/",
            storage_provider=provider,
        )
        if settings:
            from adx_core.db.models import Tenant

            row = await session.get(Tenant, tenant_id)
            assert row is not None
            row.settings = dict(settings)
        setup = TenantSetupRepository(session)
        quotas = {name: getattr(spec.quotas, name) for name in spec.quotas.__dataclass_fields__}
        await setup.put_quotas(tenant_id, quotas, list(spec.features), {})
        await setup.grant_permissions(tenant_id, DEFAULT_ROLE_PERMISSIONS)
        repo = MembershipRepository(session)
        for name, role in wanted.items():
            email = f"{name}@{slug}.test"
            user_id = await repo.create_identity(uuid.uuid4(), email, name.title())
            await repo.add(tenant_id, user_id, role.value)
            seeded.members[name] = Member(str(user_id), email, role)
    return seeded
