"""Monitoring activities: sample a tenant's usage, and record a quota alert.

Both run in the tenant's RLS scope and are idempotent: the usage sample is an upsert of the
latest values, and an alert row is keyed by its crossing, so a retry adds nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.contracts.monitoring import (
    COLLECT_TENANT_USAGE_ACTIVITY,
    RECORD_QUOTA_ALERT_ACTIVITY,
    RESOURCES,
    TENANT_GONE,
    QuotaAlert,
    QuotaAlertResult,
    ResourceAmounts,
    UsageRequest,
    UsageSample,
)
from adx_core.contracts.plans import Plan, effective_quotas
from adx_core.contracts.tenants import TenantStatus
from adx_core.db.engine import InvalidTenantIdError, Sessions, parse_tenant_id, tenant_session
from adx_core.db.models import (
    Base,
    File,
    Membership,
    Tenant,
    TenantAlert,
    TenantQuota,
    TenantUsage,
    User,
)
from adx_core.logging import get_logger
from adx_core.storage import StorageRegistry, tenant_prefix

log = get_logger(__name__)

TENANT_USAGE = Gauge(
    "adx_tenant_usage", "A tenant's latest sampled usage", ["tenant_id", "resource"]
)
TENANT_QUOTA = Gauge("adx_tenant_quota", "A tenant's quota", ["tenant_id", "resource"])
TENANT_QUOTA_RATIO = Gauge(
    "adx_tenant_quota_ratio", "Latest usage divided by the quota", ["tenant_id", "resource"]
)
# No tenant label: alerts are rare, and the gauges above already say which tenant is high.
TENANT_ALERTS = Counter(
    "adx_tenant_alerts_total", "Quota alerts recorded", ["resource", "threshold", "state"]
)

# Rows the platform keeps about a tenant rather than rows the tenant stores: they do not
# count against its db_rows quota (alerts counting would even feed back into the usage).
_BOOKKEEPING_TABLES = frozenset(
    {"tenants", "tenant_usage", "tenant_alerts", "tenant_quotas", "audit_log", "notifications_sent"}
)
_GONE = frozenset({TenantStatus.FAILED.value, TenantStatus.DEPROVISIONED.value})
_FILE_GONE = ("deleted",)


def tenant_tables() -> list[Table]:
    """Every table holding the tenant's own rows: those with a tenant_id, less bookkeeping."""
    return [
        table
        for name, table in sorted(Base.metadata.tables.items())
        if "tenant_id" in table.c and name not in _BOOKKEEPING_TABLES
    ]


def _gone(tenant_id: str, why: str) -> ApplicationError:
    return ApplicationError(f"tenant {tenant_id} {why}", type=TENANT_GONE, non_retryable=True)


class MonitoringActivities:
    def __init__(self, sessions: Sessions, stores: StorageRegistry) -> None:
        self._sessions = sessions
        self._stores = stores

    @activity.defn(name=COLLECT_TENANT_USAGE_ACTIVITY)
    async def collect_tenant_usage(self, request: UsageRequest) -> UsageSample:
        try:
            tenant_id = parse_tenant_id(request.tenant_id)
        except InvalidTenantIdError:
            raise _gone(request.tenant_id, "is not a tenant id") from None
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None or tenant.status in _GONE:
                forget_tenant_metrics(request.tenant_id)
                why = "does not exist" if tenant is None else f"is {tenant.status}"
                raise _gone(request.tenant_id, why)
            quotas = await _quotas(session, tenant_id, tenant.plan)
            files, users, db_rows = await _row_counts(session, tenant_id)
            # The provider its files are in now (a migration may have moved them).
            store = self._stores.get(tenant.storage_provider)
        # Outside the transaction: walking a large prefix must not hold a connection.
        storage = await store.prefix_usage(tenant_prefix(tenant_id))
        usage = ResourceAmounts(
            storage_bytes=storage.bytes, files=files, users=users, db_rows=db_rows
        )
        sampled_at = datetime.now(UTC)
        values = {**_as_dict(usage), "sampled_at": sampled_at}
        async with tenant_session(self._sessions, tenant_id) as session:
            # The latest sample only: history belongs in Prometheus, not in a growing table.
            await session.execute(
                insert(TenantUsage)
                .values(tenant_id=tenant_id, **values)
                .on_conflict_do_update(index_elements=[TenantUsage.tenant_id], set_=values)
            )
        _export(request.tenant_id, usage, quotas)
        log.info("tenant usage sampled", tenant_id=request.tenant_id, **_as_dict(usage))
        return UsageSample(
            tenant_id=request.tenant_id, usage=usage, quotas=quotas, sampled_at=sampled_at
        )

    @activity.defn(name=RECORD_QUOTA_ALERT_ACTIVITY)
    async def record_quota_alert(self, alert: QuotaAlert) -> QuotaAlertResult:
        if alert.resource not in RESOURCES or alert.state not in ("raised", "cleared"):
            raise ApplicationError("unknown resource or alert state", non_retryable=True)
        tenant_id = parse_tenant_id(alert.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                raise _gone(alert.tenant_id, "does not exist")
            inserted = await session.scalar(
                insert(TenantAlert)
                .values(
                    tenant_id=tenant_id,
                    key=alert.key,
                    resource=alert.resource,
                    threshold_percent=alert.threshold_percent,
                    usage=alert.usage,
                    quota=alert.quota,
                    state=alert.state,
                )
                .on_conflict_do_nothing(index_elements=[TenantAlert.key])
                .returning(TenantAlert.id)
            )
            alert_id = inserted
            if alert_id is None:
                alert_id = await session.scalar(
                    select(TenantAlert.id).where(TenantAlert.key == alert.key)
                )
            admins: list[str] = []
            if alert.state == "raised":
                admins = list(
                    await session.scalars(
                        select(User.email)
                        .join(Membership, Membership.user_id == User.id)
                        .where(
                            Membership.tenant_id == tenant_id,
                            Membership.role == "tenant-admin",
                            User.status == "active",
                        )
                        .order_by(User.email)
                    )
                )
        if alert_id is None:
            # The key exists but RLS hides it: another tenant's key. Never expected.
            raise ApplicationError("alert key belongs to another tenant", non_retryable=True)
        if inserted is not None:
            TENANT_ALERTS.labels(alert.resource, str(alert.threshold_percent), alert.state).inc()
            log.warning(
                "quota alert",
                tenant_id=alert.tenant_id,
                resource=alert.resource,
                threshold_percent=alert.threshold_percent,
                state=alert.state,
            )
        return QuotaAlertResult(
            alert_id=int(alert_id),
            recorded=inserted is not None,
            tenant_name=tenant.display_name,
            admin_emails=admins,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.collect_tenant_usage, self.record_quota_alert]


async def _quotas(session: AsyncSession, tenant_id: uuid.UUID, plan: str) -> ResourceAmounts:
    row = await session.get(TenantQuota, tenant_id)
    if row is not None:
        return ResourceAmounts(
            storage_bytes=row.storage_bytes, files=row.files, users=row.users, db_rows=row.db_rows
        )
    # A tenant provisioned before quota rows existed still has its plan's quotas.
    plan_quotas = effective_quotas(Plan(plan))
    return ResourceAmounts(
        storage_bytes=plan_quotas.storage_bytes,
        files=plan_quotas.files,
        users=plan_quotas.users,
        db_rows=plan_quotas.db_rows,
    )


async def _row_counts(session: AsyncSession, tenant_id: uuid.UUID) -> tuple[int, int, int]:
    # RLS already limits every count to the tenant; the explicit filter is the second line
    # of defence and lets PostgreSQL use the tenant_id indexes.
    files = (
        select(func.count())
        .select_from(File)
        .where(File.tenant_id == tenant_id, File.status.not_in(_FILE_GONE))
        .scalar_subquery()
    )
    users = (
        select(func.count())
        .select_from(Membership)
        .where(Membership.tenant_id == tenant_id)
        .scalar_subquery()
    )
    row_counts = [
        select(func.count()).select_from(t).where(t.c.tenant_id == tenant_id).scalar_subquery()
        for t in tenant_tables()
    ]
    total = row_counts[0]
    for count in row_counts[1:]:
        total = total + count  # type: ignore[assignment]
    result = (await session.execute(select(files, users, total))).one()
    return int(result[0]), int(result[1]), int(result[2])


def _as_dict(amounts: ResourceAmounts) -> dict[str, int]:
    return {name: int(getattr(amounts, name)) for name in RESOURCES}


def _export(tenant_id: str, usage: ResourceAmounts, quotas: ResourceAmounts) -> None:
    for resource in RESOURCES:
        used, quota = getattr(usage, resource), getattr(quotas, resource)
        TENANT_USAGE.labels(tenant_id, resource).set(used)
        TENANT_QUOTA.labels(tenant_id, resource).set(quota)
        TENANT_QUOTA_RATIO.labels(tenant_id, resource).set(used / quota if quota > 0 else 0.0)


def forget_tenant_metrics(tenant_id: str) -> None:
    """Drop a gone tenant's series, so dashboards do not show it frozen at its last value."""
    for gauge in (TENANT_USAGE, TENANT_QUOTA, TENANT_QUOTA_RATIO):
        for resource in RESOURCES:
            with contextlib.suppress(KeyError):
                gauge.remove(tenant_id, resource)
