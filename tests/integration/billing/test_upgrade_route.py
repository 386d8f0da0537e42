"""POST /v1/tenants/{id}/upgrade: who may call it, what it answers, and duplicates."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from adx_core.auth import Role
from adx_core.payments import DECLINING_METHOD
from adx_core.payments.stripe_provider import StripeProvider
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.billing.conftest import (
    BillingWorkerFactory,
    TenantFactory,
    TenantFixture,
    tenant_state,
)
from tests.integration.test_tenant_slice import auth, wait_for_status
from tests.support.localstripe import CARD_OK, LocalStripe

Api = TestClient[web.Request, web.Application]


def path(tenant: TenantFixture | str) -> str:
    tenant_id = tenant if isinstance(tenant, str) else tenant.tenant_id
    return f"/v1/tenants/{tenant_id}/upgrade"


def admin_of(token: TokenFactory, tenant: TenantFixture) -> str:
    return token(Role.TENANT_ADMIN, tenant.tenant_id, tenant.admin_id)


async def queue_workflows(temporal_client: Client, settings: Settings) -> list[str]:
    query = f'TaskQueue="{settings.task_queue("tenants")}"'
    return [wf.id async for wf in temporal_client.list_workflows(query)]


async def test_tenant_admin_gets_202_with_location_then_success(
    api: Api,
    token: TokenFactory,
    billing_worker: BillingWorkerFactory,
    make_tenant: TenantFactory,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    admin = admin_of(token, tenant)
    async with billing_worker():
        response = await api.post(path(tenant), json={"plan": "pro"}, headers=auth(admin))
        assert response.status == 202
        location = response.headers["Location"]
        assert location.startswith("/v1/operations/tenant-upgrade-")
        final = await wait_for_status(api, admin, location)

    assert final["status"] == "succeeded", final["error"]
    assert final["type"] == "tenant_upgrade_workflow"
    assert final["result"]["plan"] == "pro"
    assert (await tenant_state(owner_engine, tenant.tenant_id)).plan == "pro"


async def test_prefer_wait_answers_200_with_the_result(
    api: Api,
    token: TokenFactory,
    billing_worker: BillingWorkerFactory,
    make_tenant: TenantFactory,
) -> None:
    tenant = await make_tenant()
    async with billing_worker():
        response = await api.post(
            path(tenant),
            json={"plan": "enterprise"},
            headers={**auth(token()), "Prefer": "wait=20"},  # a platform admin
        )
        operation = await response.json()
    assert response.status == 200
    assert response.headers["Preference-Applied"] == "wait=20"
    assert operation["status"] == "succeeded"
    assert operation["result"]["amount_cents"] == 49_900


async def test_declined_payment_is_a_failed_operation_naming_the_reason(
    api: Api,
    token: TokenFactory,
    billing_worker: BillingWorkerFactory,
    make_tenant: TenantFactory,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    async with billing_worker():
        response = await api.post(
            path(tenant),
            json={"plan": "pro", "payment_method": DECLINING_METHOD},
            headers={**auth(admin_of(token, tenant)), "Prefer": "wait=20"},
        )
        operation = await response.json()
    assert operation["status"] == "failed"
    assert operation["error"]["code"] == "PaymentDeclined"
    assert operation["error"]["step"] == "payment"
    assert "card_declined" in operation["error"]["detail"]
    assert (await tenant_state(owner_engine, tenant.tenant_id)).plan == "free"


async def test_same_idempotency_key_charges_once(
    api: Api,
    token: TokenFactory,
    billing_worker: BillingWorkerFactory,
    stripe_provider: StripeProvider,
    localstripe: LocalStripe,
    make_tenant: TenantFactory,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    admin = admin_of(token, tenant)
    body = {"plan": "pro", "payment_method": await localstripe.payment_method(CARD_OK)}
    headers = {**auth(admin), "Idempotency-Key": "order-7f3a"}
    async with billing_worker(provider=stripe_provider):
        first = await api.post(path(tenant), json=body, headers=headers)
        second = await api.post(path(tenant), json=body, headers=headers)
        assert first.status == second.status == 202
        assert first.headers["Location"] == second.headers["Location"]
        final = await wait_for_status(api, admin, first.headers["Location"])
        # After it ended: the same answer, not a second run.
        third = await api.post(path(tenant), json=body, headers=headers)
        reused = await api.post(path(tenant), json={**body, "plan": "enterprise"}, headers=headers)

    assert final["status"] == "succeeded", final["error"]
    assert third.status == 200
    assert (await third.json())["id"] == final["id"]
    assert reused.status == 422
    assert reused.content_type == "application/problem+json"
    intents = await localstripe.intents()
    assert [i["status"] for i in intents] == ["succeeded"]
    state = await tenant_state(owner_engine, tenant.tenant_id)
    assert (state.plan, state.payments) == ("pro", [("captured", None)])


async def test_admin_of_another_tenant_gets_404_and_nothing_changes(
    api: Api,
    token: TokenFactory,
    billing_worker: BillingWorkerFactory,
    make_tenant: TenantFactory,
    owner_engine: AsyncEngine,
    temporal_client: Client,
    settings: Settings,
) -> None:
    tenant_a = await make_tenant("acme")
    tenant_b = await make_tenant("globex")
    async with billing_worker():
        response = await api.post(
            path(tenant_b), json={"plan": "pro"}, headers=auth(admin_of(token, tenant_a))
        )
    assert response.status == 404
    assert response.content_type == "application/problem+json"
    state = await tenant_state(owner_engine, tenant_b.tenant_id)
    assert (state.plan, state.payments) == ("free", [])
    assert await queue_workflows(temporal_client, settings) == []


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
async def test_non_admins_of_the_tenant_get_403(
    role: Role,
    api: Api,
    token: TokenFactory,
    make_tenant: TenantFactory,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    member = token(role, tenant.tenant_id, tenant.member_id)
    response = await api.post(path(tenant), json={"plan": "pro"}, headers=auth(member))
    assert response.status == 403
    assert (await tenant_state(owner_engine, tenant.tenant_id)).plan == "free"


OVERSIZED = {"plan": "pro", "payment_method": "x" * (70 * 1024)}


@pytest.mark.parametrize(
    ("send", "status"),
    [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": b"[" * 5_000, "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": OVERSIZED}, 413),
        ({"json": {"plan": "pro", "coupon": "FREE"}}, 422),
        ({"json": {"plan": "platinum"}}, 422),
        ({"json": {"plan": None}}, 422),
        ({"json": {}}, 422),
        ({"json": ["pro"]}, 422),
        ({"json": {"plan": "pro", "payment_method": "pm_1\r\nX-Evil: 1"}}, 422),
        ({"json": {"plan": "pro", "payment_method": 42}}, 422),
        ({"data": b"plan=pro", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"json": {"plan": "pro"}, "headers": {"Idempotency-Key": "k" * 201}}, 400),
        ({"json": {"plan": "pro"}, "headers": {"Idempotency-Key": "spaces are out"}}, 400),
    ],
    ids=[
        "malformed",
        "deeply-nested",
        "oversized",
        "unknown-field",
        "unknown-plan",
        "null-plan",
        "no-plan",
        "not-an-object",
        "control-chars",
        "wrong-type",
        "wrong-media-type",
        "long-idempotency-key",
        "bad-idempotency-key",
    ],
)
async def test_bad_bodies_are_problems_and_start_nothing(
    send: dict[str, Any],
    status: int,
    api: Api,
    token: TokenFactory,
    make_tenant: TenantFactory,
    owner_engine: AsyncEngine,
    temporal_client: Client,
    settings: Settings,
) -> None:
    tenant = await make_tenant()
    headers = {**auth(admin_of(token, tenant)), **send.pop("headers", {})}
    response = await api.post(path(tenant), headers=headers, **send)
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert (await tenant_state(owner_engine, tenant.tenant_id)).plan == "free"
    assert await queue_workflows(temporal_client, settings) == []


@pytest.mark.parametrize(
    "tenant_id",
    [str(uuid.uuid4()), "not-a-uuid", "{" + str(uuid.uuid4()) + "}", "..%2F..%2Fetc"],
    ids=["unknown", "not-a-uuid", "braces", "traversal"],
)
async def test_unknown_or_malformed_tenant_ids_are_404(
    tenant_id: str, api: Api, token: TokenFactory
) -> None:
    response = await api.post(path(tenant_id), json={"plan": "pro"}, headers=auth(token()))
    assert response.status == 404
    assert response.content_type == "application/problem+json"


async def test_without_a_token_it_is_401(api: Api, make_tenant: TenantFactory) -> None:
    tenant = await make_tenant()
    response = await api.post(path(tenant), json={"plan": "pro"})
    assert response.status == 401
