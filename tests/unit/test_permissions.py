"""Roles and permissions: one table, the rows written for new tenants derived from it, and
the API's role checks granting exactly what they granted when each route listed roles."""

from __future__ import annotations

import uuid

import pytest

from adx_api.problems import ProblemError
from adx_api.routes.common import require_permission
from adx_core.auth import Claims, Role
from adx_core.contracts import permissions as p

EVERY_ROLE = frozenset(Role)
ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.TENANT_ADMIN})

# Who each API check let through before the table existed (the roles each route listed).
ALLOWED_BEFORE = {
    p.TENANTS_CREATE: frozenset({Role.PLATFORM_ADMIN}),
    p.TENANTS_DELETE: frozenset({Role.PLATFORM_ADMIN}),  # and from the platform tenant
    p.BILLING_MANAGE: ADMINS,  # upgrade
    p.USERS_MANAGE: ADMINS,
    p.GROUPS_MANAGE: ADMINS,
    p.STORAGE_MIGRATE: ADMINS,
    p.CODEC_USE: frozenset({Role.PLATFORM_ADMIN}),
    p.OPERATIONS_READ: EVERY_ROLE,
    p.OPERATIONS_CANCEL: frozenset({Role.PLATFORM_ADMIN, Role.TENANT_ADMIN, Role.MEMBER}),
}


def test_every_role_has_an_entry() -> None:
    assert set(p.ROLE_PERMISSIONS) == {role.value for role in Role}


@pytest.mark.parametrize("permission", sorted(ALLOWED_BEFORE))
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_require_permission_allows_whom_the_routes_allowed(permission: str, role: Role) -> None:
    claims = Claims(str(uuid.uuid4()), str(uuid.uuid4()), (role,))
    if role in ALLOWED_BEFORE[permission]:
        require_permission(claims, permission)
    else:
        with pytest.raises(ProblemError) as refused:
            require_permission(claims, permission)
        assert (refused.value.status, refused.value.kind) == (403, "forbidden")
        assert permission in (refused.value.detail or "")


def test_any_of_several_roles_is_enough() -> None:
    claims = Claims(str(uuid.uuid4()), str(uuid.uuid4()), (Role.VIEWER, Role.TENANT_ADMIN))
    require_permission(claims, p.USERS_MANAGE)


def test_the_rows_for_new_tenants_are_unchanged() -> None:
    """DEFAULT_ROLE_PERMISSIONS (written at provisioning) is derived from the table and is
    exactly what provisioning wrote before: same roles, same permissions, same order."""
    assert p.DEFAULT_ROLE_PERMISSIONS == {
        "tenant-admin": (
            "tenant.read",
            "tenant.access",
            "tenant.manage",
            "billing.manage",
            "users.read",
            "users.manage",
            "files.read",
            "files.write",
            "files.share",
        ),
        "member": (
            "tenant.read",
            "tenant.access",
            "users.read",
            "files.read",
            "files.write",
            "files.share",
        ),
        "viewer": ("tenant.read", "tenant.access", "users.read", "files.read"),
    }
    assert p.TENANT_ROLES == ("tenant-admin", "member", "viewer")


def test_the_tenant_rows_are_the_tables_tenant_scoped_part() -> None:
    """No drift: each tenant role's rows are its table entry cut to the tenant-scoped set."""
    for role, rows in p.DEFAULT_ROLE_PERMISSIONS.items():
        assert set(rows) == p.ROLE_PERMISSIONS[role] & set(p.TENANT_SCOPED)
