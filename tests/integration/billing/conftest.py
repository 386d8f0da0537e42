"""Fixtures for the billing tests: localstripe on loopback, tenants set up as rows, and a
tenants-queue worker that runs the billing workflows with any activity replaced by a fake."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.contracts.plans import PLANS, Plan
from adx_core.payments import ManualProvider, PaymentProvider
from adx_core.payments.stripe_provider import StripeProvider
from adx_core.settings import Settings
from adx_workers.billing.worker import WORKFLOWS, activities_for
from adx_workers.common.notify import NotificationActivities
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from tests.support.localstripe import API_KEY, LocalStripe
from tests.support.workers import activity_name


@pytest.fixture(scope="session")
async def localstripe_server() -> AsyncIterator[LocalStripe]:
    server = LocalStripe()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def localstripe(localstripe_server: LocalStripe) -> LocalStripe:
    """This test's view of localstripe: empty at the start."""
    localstripe_server.clear()
    return localstripe_server


@pytest.fixture
def stripe_settings(settings: Settings, localstripe: LocalStripe) -> Settings:
    return settings.model_copy(
        update={
            "payment_provider": "stripe",
            "stripe_api_key": SecretStr(API_KEY),
            "stripe_api_base": localstripe.url,
        }
    )


@pytest.fixture
async def stripe_provider(stripe_settings: Settings) -> AsyncIterator[StripeProvider]:
    assert stripe_settings.stripe_api_key is not None
    provider = StripeProvider(
        stripe_settings.stripe_api_key.get_secret_value(), stripe_settings.stripe_api_base
    )
    yield provider
    await provider.close()


BillingWorkerFactory = Callable[..., Worker]


@pytest.fixture
def billing_worker(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> BillingWorkerFactory:
    """A worker on this test's tenants queue with the billing workflows, the given provider
    (manual by default) and some activities replaced by fakes of the same name."""

    def make(*fakes: Callable[..., Any], provider: PaymentProvider | None = None) -> Worker:
        real = [
            *activities_for(resources, provider or ManualProvider()),
            NotificationActivities(resources.sessions, resources.notifier).send_notification,
        ]
        activities = {activity_name(a): a for a in real}
        for fake in fakes:
            assert activity_name(fake) in activities, f"no activity named {activity_name(fake)}"
            activities[activity_name(fake)] = fake
        return Worker(
            temporal_client,
            task_queue=settings.task_queue("tenants"),
            workflows=WORKFLOWS,
            activities=list(activities.values()),
            workflow_runner=workflow_runner(),
            default_heartbeat_throttle_interval=timedelta(milliseconds=200),
            max_heartbeat_throttle_interval=timedelta(milliseconds=200),
        )

    return make


@dataclass(frozen=True)
class TenantFixture:
    tenant_id: str
    slug: str
    admin_id: str
    admin_email: str
    member_id: str


TenantFactory = Callable[..., Any]


@pytest.fixture
def make_tenant(owner_engine: AsyncEngine) -> TenantFactory:
    """An active tenant as rows (the provisioning workflow is not under test here): its
    quotas for the plan, a tenant-admin and a member."""

    async def make(slug: str = "acme", plan: Plan = Plan.FREE) -> TenantFixture:
        tenant_id, admin_id, member_id = (str(uuid.uuid4()) for _ in range(3))
        quotas = PLANS[plan].quotas
        admin_email = f"admin@{slug}.test"
        async with owner_engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix)"
                    " VALUES (CAST(:id AS uuid), :slug, :name, :plan, 'active', :prefix)"
                ),
                {
                    "id": tenant_id,
                    "slug": slug,
                    "name": f"{slug.title()} Inc",
                    "plan": plan.value,
                    "prefix": f"tenants/{tenant_id}/",
                },
            )
            await conn.execute(
                text(
                    "INSERT INTO tenant_quotas (tenant_id, storage_bytes, files, users, db_rows,"
                    " file_bytes, features) VALUES (CAST(:id AS uuid), :storage, :files, :users,"
                    " :rows, :file_bytes, CAST(:features AS jsonb))"
                ),
                {
                    "id": tenant_id,
                    "storage": quotas.storage_bytes,
                    "files": quotas.files,
                    "users": quotas.users,
                    "rows": quotas.db_rows,
                    "file_bytes": quotas.file_bytes,
                    "features": '["' + '","'.join(PLANS[plan].features) + '"]',
                },
            )
            for user_id, email, role in (
                (admin_id, admin_email, "tenant-admin"),
                (member_id, f"member@{slug}.test", "member"),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO users (id, email, name) VALUES (CAST(:id AS uuid), :email, :n)"
                    ),
                    {"id": user_id, "email": email, "n": email.split("@")[0]},
                )
                await conn.execute(
                    text(
                        "INSERT INTO memberships (tenant_id, user_id, role)"
                        " VALUES (CAST(:t AS uuid), CAST(:u AS uuid), :role)"
                    ),
                    {"t": tenant_id, "u": user_id, "role": role},
                )
        return TenantFixture(tenant_id, slug, admin_id, admin_email, member_id)

    return make


@dataclass(frozen=True)
class TenantState:
    plan: str
    files_quota: int
    features: list[str]
    payments: list[tuple[str, str | None]]  # (status, failure)


async def tenant_state(owner_engine: AsyncEngine, tenant_id: str) -> TenantState:
    async with owner_engine.connect() as conn:
        plan = await conn.scalar(
            text("SELECT plan FROM tenants WHERE id = CAST(:id AS uuid)"), {"id": tenant_id}
        )
        quota = (
            await conn.execute(
                text(
                    "SELECT files, features FROM tenant_quotas WHERE tenant_id = CAST(:id AS uuid)"
                ),
                {"id": tenant_id},
            )
        ).one()
        payments = (
            await conn.execute(
                text(
                    "SELECT status, failure FROM payments WHERE tenant_id = CAST(:id AS uuid)"
                    " ORDER BY created_at"
                ),
                {"id": tenant_id},
            )
        ).all()
    return TenantState(
        plan=str(plan),
        files_quota=int(quota.files),
        features=list(quota.features),
        payments=[(str(p.status), p.failure) for p in payments],
    )
