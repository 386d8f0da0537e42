"""A Tenant resource read into typed values: what the user asks for, plus the metadata
the operator acts on (uid, generation, whether it is being deleted).

The CRD's schema and CEL rules have already refused malformed input by the time the
operator sees it. What they cannot know (a quota override that is more than ten times
the plan's value, a storage provider this deployment has not configured) is found here
and reported as the resource's failure, not raised.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from adx_core.contracts.plans import Plan, QuotaOverrideError, QuotaOverrides, validate_overrides

# spec.quotas (camelCase, as in the CRD) onto QuotaOverrides' fields.
QUOTA_FIELDS = {
    "storageBytes": "storage_bytes",
    "files": "files",
    "users": "users",
    "dbRows": "db_rows",
    "fileBytes": "file_bytes",
}


@dataclass(frozen=True)
class StorageSpec:
    provider: str
    region: str | None = None
    bucket: str | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class TenantSpec:
    uid: str
    slug: str
    generation: int
    deleting: bool
    display_name: str
    plan: Plan
    admin_email: str
    admin_name: str
    quotas: QuotaOverrides | None
    paused: bool
    storage: StorageSpec | None


def provisioning_fields(spec: TenantSpec) -> dict[str, Any]:
    """The spec fields only provisioning applies: no workflow changes them later."""
    quotas = spec.quotas
    return {
        "displayName": spec.display_name,
        "admin": {"email": spec.admin_email, "name": spec.admin_name},
        "quotas": {
            camel: getattr(quotas, field)
            for camel, field in QUOTA_FIELDS.items()
            if quotas is not None and getattr(quotas, field) is not None
        },
    }


def read_tenant(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> TenantSpec:
    admin = spec.get("admin") or {}
    quotas = spec.get("quotas") or {}
    storage = spec.get("storage")
    return TenantSpec(
        uid=str(meta["uid"]),
        slug=str(meta["name"]),
        generation=int(meta.get("generation") or 1),
        deleting=bool(meta.get("deletionTimestamp")),
        display_name=str(spec.get("displayName", "")),
        plan=Plan(spec.get("plan") or Plan.FREE.value),
        admin_email=str(admin.get("email", "")),
        admin_name=str(admin.get("name", "")),
        quotas=QuotaOverrides(**{QUOTA_FIELDS[k]: int(v) for k, v in quotas.items()})
        if quotas
        else None,
        paused=bool(spec.get("paused", False)),
        storage=StorageSpec(
            provider=str(storage["provider"]),
            region=storage.get("region"),
            bucket=storage.get("bucket"),
            prefix=storage.get("prefix"),
        )
        if storage
        else None,
    )


def spec_problem(
    spec: TenantSpec, default_provider: str, configured: Collection[str]
) -> str | None:
    """Why this deployment cannot provision the tenant as asked, or ``None``."""
    if spec.quotas is not None:
        try:
            validate_overrides(spec.plan, spec.quotas)
        except QuotaOverrideError as err:
            return f"spec.quotas: {err}"
    storage = spec.storage
    if storage is None:
        return None
    if storage.provider not in configured:
        return (
            f"spec.storage.provider: {storage.provider} is not configured in this deployment "
            f"(configured: {', '.join(sorted(configured))})"
        )
    if storage.provider != default_provider:
        # New tenants start on the deployment's default provider; a StorageMigration moves
        # them. Saying so beats provisioning somewhere other than where the spec says.
        return (
            f"spec.storage.provider: new tenants are provisioned on {default_provider}; "
            f"create the tenant there and move it to {storage.provider} with a StorageMigration"
        )
    if storage.bucket or storage.region or storage.prefix:
        return (
            "spec.storage: this deployment keeps every tenant under tenants/<id>/ in the "
            f"{storage.provider} bucket and region it is configured with; leave bucket, region "
            "and prefix out"
        )
    return None
