"""Plans: what each plan allows (quotas and features) and what it costs.

Workflow code, activities, the API and the operator all read this one table, so a plan
means the same everywhere. A tenant may carry quota overrides; ``effective_quotas`` merges
them, and ``validate_overrides`` bounds them so that an override cannot ask for the moon.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum

GIB = 1024**3


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True)
class Quotas:
    storage_bytes: int
    files: int
    users: int
    db_rows: int
    # The largest single file an upload may have (the file service enforces it).
    file_bytes: int


@dataclass(frozen=True)
class QuotaOverrides:
    """Per-tenant changes to the plan's quotas; ``None`` keeps the plan's value."""

    storage_bytes: int | None = None
    files: int | None = None
    users: int | None = None
    db_rows: int | None = None
    file_bytes: int | None = None


@dataclass(frozen=True)
class PlanSpec:
    plan: Plan
    rank: int
    quotas: Quotas
    features: tuple[str, ...]
    # Monthly price in the smallest currency unit; an upgrade charges the difference.
    price_cents: int
    currency: str = "usd"


PLANS: dict[Plan, PlanSpec] = {
    Plan.FREE: PlanSpec(
        plan=Plan.FREE,
        rank=0,
        quotas=Quotas(
            storage_bytes=1 * GIB, files=1_000, users=5, db_rows=10_000, file_bytes=25 * 1024**2
        ),
        features=("files",),
        price_cents=0,
    ),
    Plan.PRO: PlanSpec(
        plan=Plan.PRO,
        rank=1,
        quotas=Quotas(
            storage_bytes=100 * GIB,
            files=100_000,
            users=50,
            db_rows=1_000_000,
            file_bytes=1 * GIB,
        ),
        features=("files", "sharing", "thumbnails", "analysis"),
        price_cents=4_900,
    ),
    Plan.ENTERPRISE: PlanSpec(
        plan=Plan.ENTERPRISE,
        rank=2,
        quotas=Quotas(
            storage_bytes=1024 * GIB,
            files=10_000_000,
            users=1_000,
            db_rows=100_000_000,
            file_bytes=5 * GIB,
        ),
        features=("files", "sharing", "thumbnails", "analysis", "migration", "sso"),
        price_cents=49_900,
    ),
}

# An override may raise a quota to at most this many times the plan's value: beyond that
# the tenant needs a bigger plan, not an override.
MAX_OVERRIDE_FACTOR = 10

QUOTA_NAMES = tuple(f.name for f in fields(Quotas))


class QuotaOverrideError(ValueError):
    pass


def validate_overrides(plan: Plan, overrides: QuotaOverrides) -> None:
    base = PLANS[plan].quotas
    for name in QUOTA_NAMES:
        value = getattr(overrides, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise QuotaOverrideError(f"quota {name} must be a positive integer")
        limit = getattr(base, name) * MAX_OVERRIDE_FACTOR
        if value > limit:
            raise QuotaOverrideError(
                f"quota {name} may be at most {limit} on the {plan.value} plan"
            )


def effective_quotas(plan: Plan, overrides: QuotaOverrides | None = None) -> Quotas:
    quotas = PLANS[plan].quotas
    if overrides is None:
        return quotas
    changes = {n: getattr(overrides, n) for n in QUOTA_NAMES if getattr(overrides, n) is not None}
    return replace(quotas, **changes)
