"""The permissions each role has in a tenant by default.

Provisioning writes these rows for every new tenant (the tenant may change them later);
the API and the switch workflow read them from the database, never from this table.
"""

from __future__ import annotations

TENANT_READ = "tenant.read"
TENANT_ACCESS = "tenant.access"  # may make the tenant their active tenant
TENANT_MANAGE = "tenant.manage"
BILLING_MANAGE = "billing.manage"
USERS_READ = "users.read"
USERS_MANAGE = "users.manage"
FILES_READ = "files.read"
FILES_WRITE = "files.write"
FILES_SHARE = "files.share"

DEFAULT_ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "tenant-admin": (
        TENANT_READ,
        TENANT_ACCESS,
        TENANT_MANAGE,
        BILLING_MANAGE,
        USERS_READ,
        USERS_MANAGE,
        FILES_READ,
        FILES_WRITE,
        FILES_SHARE,
    ),
    "member": (TENANT_READ, TENANT_ACCESS, USERS_READ, FILES_READ, FILES_WRITE, FILES_SHARE),
    "viewer": (TENANT_READ, TENANT_ACCESS, USERS_READ, FILES_READ),
}

TENANT_ROLES = tuple(DEFAULT_ROLE_PERMISSIONS)
