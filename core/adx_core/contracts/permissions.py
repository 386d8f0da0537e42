"""What each role may do: one table, ``ROLE_PERMISSIONS``, for every check the API makes.

The API checks a caller's roles against it (``adx_api.routes.common.require_permission``).
The tenant-scoped part (``TENANT_SCOPED``) is also copied into each new tenant's
``tenant_role_permissions`` rows at provisioning (``DEFAULT_ROLE_PERMISSIONS``, derived
below, so the two cannot drift). A tenant may narrow those rows later: the file routes and
the tenant switch read them from the database, not from this table.

Role names are spelled out here rather than imported from ``adx_core.auth``: the contracts
load inside the workflow sandbox and import nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable

PLATFORM_ADMIN = "platform-admin"
TENANT_ADMIN = "tenant-admin"
MEMBER = "member"
VIEWER = "viewer"

# Tenant-scoped: written per tenant, and narrowable by the tenant.
TENANT_READ = "tenant.read"
TENANT_ACCESS = "tenant.access"  # may make the tenant their active tenant
TENANT_MANAGE = "tenant.manage"
BILLING_MANAGE = "billing.manage"  # change the plan (POST /v1/tenants/{id}/upgrade)
USERS_READ = "users.read"
USERS_MANAGE = "users.manage"  # invite, change and remove a tenant's users
FILES_READ = "files.read"
FILES_WRITE = "files.write"
FILES_SHARE = "files.share"

# Checked against ROLE_PERMISSIONS only.
TENANTS_CREATE = "tenants.create"
TENANTS_DELETE = "tenants.delete"
GROUPS_MANAGE = "groups.manage"
STORAGE_MIGRATE = "storage.migrate"
CODEC_USE = "codec.use"  # the Temporal UI's codec server: decrypt any payload
OPERATIONS_READ = "operations.read"
OPERATIONS_CANCEL = "operations.cancel"

TENANT_SCOPED: tuple[str, ...] = (
    TENANT_READ,
    TENANT_ACCESS,
    TENANT_MANAGE,
    BILLING_MANAGE,
    USERS_READ,
    USERS_MANAGE,
    FILES_READ,
    FILES_WRITE,
    FILES_SHARE,
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    # Platform admins act on tenants, not in them: no tenant.access and no files.*; they
    # reach a tenant's files only through a role of that tenant.
    PLATFORM_ADMIN: frozenset(
        {
            TENANTS_CREATE,
            TENANTS_DELETE,
            TENANT_READ,
            TENANT_MANAGE,
            BILLING_MANAGE,
            USERS_READ,
            USERS_MANAGE,
            GROUPS_MANAGE,
            STORAGE_MIGRATE,
            CODEC_USE,
            OPERATIONS_READ,
            OPERATIONS_CANCEL,
        }
    ),
    TENANT_ADMIN: frozenset(
        {
            *TENANT_SCOPED,
            GROUPS_MANAGE,
            STORAGE_MIGRATE,
            OPERATIONS_READ,
            OPERATIONS_CANCEL,
        }
    ),
    MEMBER: frozenset(
        {
            TENANT_READ,
            TENANT_ACCESS,
            USERS_READ,
            FILES_READ,
            FILES_WRITE,
            FILES_SHARE,
            OPERATIONS_READ,
            OPERATIONS_CANCEL,
        }
    ),
    VIEWER: frozenset({TENANT_READ, TENANT_ACCESS, USERS_READ, FILES_READ, OPERATIONS_READ}),
}


def role_grants(roles: Iterable[str], permission: str) -> bool:
    """Whether any of ``roles`` (role names) carries ``permission``."""
    return any(permission in ROLE_PERMISSIONS.get(role, frozenset()) for role in roles)


# The roles a tenant's members hold, each with its tenant-scoped permissions, in
# TENANT_SCOPED order: the rows provisioning writes for every new tenant.
DEFAULT_ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    role: tuple(p for p in TENANT_SCOPED if p in ROLE_PERMISSIONS[role])
    for role in (TENANT_ADMIN, MEMBER, VIEWER)
}

TENANT_ROLES = tuple(DEFAULT_ROLE_PERMISSIONS)
