"""tenant_upgrade_workflow and payment_workflow on the real Temporal dev server, the real
PostgreSQL and Stripe's API as localstripe serves it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError, FailureError
from temporalio.service import RPCError

from adx_core.contracts.billing import (
    APPLY_PLAN_ACTIVITY,
    CAPTURE_PAYMENT_ACTIVITY,
    CONFIRM_PLAN_CHANGE_ACTIVITY,
    PAYMENT_DECLINED,
    TENANT_UPGRADE_WORKFLOW,
    USAGE_EXCEEDS_PLAN,
    VALIDATE_PLAN_CHANGE_ACTIVITY,
    ApplyPlanInput,
    ApplyPlanResult,
    ConfirmPlanChangeInput,
    PaymentState,
    PaymentStepInput,
    PlanChangeInput,
    PlanChangeRecipients,
    PlanChangeValidation,
    TenantUpgradeRequest,
    UpgradeResult,
    upgrade_workflow_id,
)
from adx_core.contracts.plans import PLANS, Plan
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.payments import DECLINING_METHOD
from adx_core.payments.stripe_provider import StripeProvider
from adx_core.settings import Settings
from adx_workers.billing.activities import BillingActivities
from adx_workers.resources import WorkerResources
from tests.integration.billing.conftest import (
    BillingWorkerFactory,
    TenantFactory,
    TenantFixture,
    tenant_state,
)
from tests.support.localstripe import CARD_DECLINED_ON_CHARGE, CARD_OK, LocalStripe
from tests.support.mail import Mailbox

HISTORIES = Path(__file__).parents[2] / "replay" / "histories"
PRO_PRICE = PLANS[Plan.PRO].price_cents


async def start_upgrade(
    client: Client,
    settings: Settings,
    tenant: TenantFixture,
    plan: Plan = Plan.PRO,
    payment_method: str | None = None,
) -> WorkflowHandle[Any, UpgradeResult]:
    return await client.start_workflow(
        TENANT_UPGRADE_WORKFLOW,
        TenantUpgradeRequest(tenant.tenant_id, plan, tenant.admin_id, payment_method),
        id=upgrade_workflow_id(tenant.tenant_id, uuid.uuid4().hex),
        task_queue=settings.task_queue("tenants"),
        result_type=UpgradeResult,
    )


async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause: BaseException | None = failure.value.cause
    while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def record(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Save the history for tests/replay when ADX_RECORD_HISTORIES=1."""
    if os.environ.get("ADX_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


async def payment_of(client: Client, upgrade: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
    """The upgrade's payment child, as the upgrade's history names it."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        async for event in upgrade.fetch_history_events():
            if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
                attributes = event.start_child_workflow_execution_initiated_event_attributes
                return client.get_workflow_handle(attributes.workflow_id)
        assert asyncio.get_running_loop().time() < deadline, "the payment never started"
        await asyncio.sleep(0.1)


async def record_payment(client: Client, upgrade: WorkflowHandle[Any, Any], name: str) -> None:
    await record(await payment_of(client, upgrade), name)


async def test_upgrade_with_stripe_charges_applies_and_notifies(
    billing_worker: BillingWorkerFactory,
    stripe_provider: StripeProvider,
    localstripe: LocalStripe,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    tenant = await make_tenant()
    card = await localstripe.payment_method(CARD_OK)
    async with billing_worker(provider=stripe_provider):
        handle = await start_upgrade(temporal_client, settings, tenant, payment_method=card)
        result = await handle.result()

    assert (result.previous_plan, result.plan, result.amount_cents) == (
        Plan.FREE,
        Plan.PRO,
        PRO_PRICE,
    )
    state = await tenant_state(owner_engine, tenant.tenant_id)
    assert state.plan == "pro"
    assert state.files_quota == PLANS[Plan.PRO].quotas.files
    assert state.features == list(PLANS[Plan.PRO].features)
    assert state.payments == [("captured", None)]
    [intent] = await localstripe.intents()
    assert intent["id"] == result.intent_id
    assert (intent["status"], intent["amount"]) == ("succeeded", PRO_PRICE)
    [mail] = mailbox.wait_for(tenant.admin_email)
    assert "pro plan" in mail["Subject"]
    await record(handle, "tenant_upgrade_workflow--succeeded")
    await record_payment(temporal_client, handle, "payment_workflow--captured")


async def test_declined_card_changes_nothing_and_says_why(
    billing_worker: BillingWorkerFactory,
    stripe_provider: StripeProvider,
    localstripe: LocalStripe,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    before = await tenant_state(owner_engine, tenant.tenant_id)
    card = await localstripe.payment_method(CARD_DECLINED_ON_CHARGE)
    async with billing_worker(provider=stripe_provider):
        handle = await start_upgrade(temporal_client, settings, tenant, payment_method=card)
        error = await failure_of(handle)

    assert error.type == PAYMENT_DECLINED
    assert "card_declined" in error.message
    assert "declined" in error.message
    state = await tenant_state(owner_engine, tenant.tenant_id)
    assert (state.plan, state.files_quota, state.features) == (
        before.plan,
        before.files_quota,
        before.features,
    )
    assert [status for status, _ in state.payments] == ["declined"]
    assert "card_declined" in (state.payments[0][1] or "")
    [intent] = await localstripe.intents()
    assert intent["status"] == "canceled"  # the declined intent is not left open
    await record(handle, "tenant_upgrade_workflow--declined")
    await record_payment(temporal_client, handle, "payment_workflow--declined")


@activity.defn(name=APPLY_PLAN_ACTIVITY)
async def apply_fails(request: ApplyPlanInput) -> ApplyPlanResult:
    raise ApplicationError("the quota service refused the plan", non_retryable=True)


async def test_apply_failure_after_capture_refunds_and_restores(
    billing_worker: BillingWorkerFactory,
    stripe_provider: StripeProvider,
    localstripe: LocalStripe,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    card = await localstripe.payment_method(CARD_OK)
    async with billing_worker(apply_fails, provider=stripe_provider):
        handle = await start_upgrade(temporal_client, settings, tenant, payment_method=card)
        error = await failure_of(handle)

    assert "refused the plan" in error.message
    state = await tenant_state(owner_engine, tenant.tenant_id)
    assert (state.plan, state.files_quota) == ("free", PLANS[Plan.FREE].quotas.files)
    assert [status for status, _ in state.payments] == ["refunded"]
    [intent] = await localstripe.intents()
    assert intent["status"] == "succeeded"  # captured, then refunded in full
    [refund] = await localstripe.refunds(intent["id"])
    assert (refund["amount"], refund["status"]) == (PRO_PRICE, "succeeded")
    await record(handle, "tenant_upgrade_workflow--refunded")


async def test_capture_retried_after_doing_its_work_captures_once(
    billing_worker: BillingWorkerFactory,
    stripe_provider: StripeProvider,
    localstripe: LocalStripe,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
    resources: WorkerResources,
) -> None:
    real = BillingActivities(resources.sessions, stripe_provider)
    attempts: list[bool] = []

    @activity.defn(name=CAPTURE_PAYMENT_ACTIVITY)
    async def capture_then_crash(request: PaymentStepInput) -> PaymentState:
        state = await real.capture_payment(request)
        attempts.append(state.acted)
        if activity.info().attempt == 1:
            # As if the worker died after the capture and before reporting it.
            raise RuntimeError("worker lost after capturing")
        return state

    tenant = await make_tenant()
    card = await localstripe.payment_method(CARD_OK)
    async with billing_worker(capture_then_crash, provider=stripe_provider):
        handle = await start_upgrade(temporal_client, settings, tenant, payment_method=card)
        await handle.result()

    assert attempts == [True, False]  # the retry found the record and did not act
    [intent] = await localstripe.intents()
    assert intent["status"] == "succeeded"
    assert await localstripe.refunds(intent["id"]) == []
    state = await tenant_state(owner_engine, tenant.tenant_id)
    assert (state.plan, state.payments) == ("pro", [("captured", None)])


@activity.defn(name=VALIDATE_PLAN_CHANGE_ACTIVITY)
async def validate_fails(request: PlanChangeInput) -> PlanChangeValidation:
    raise ApplicationError("injected: validation is down", non_retryable=True)


@activity.defn(name=CAPTURE_PAYMENT_ACTIVITY)
async def capture_fails(request: PaymentStepInput) -> PaymentState:
    raise ApplicationError("injected: capture refused", non_retryable=True)


@activity.defn(name=CONFIRM_PLAN_CHANGE_ACTIVITY)
async def confirm_fails(request: ConfirmPlanChangeInput) -> PlanChangeRecipients:
    raise ApplicationError("injected: confirmation refused", non_retryable=True)


@pytest.mark.parametrize(
    ("fake", "payments", "intent_status", "refunded"),
    [
        (validate_fails, [], None, False),
        (capture_fails, ["cancelled"], "canceled", False),
        (apply_fails, ["refunded"], "succeeded", True),
        (confirm_fails, ["refunded"], "succeeded", True),
    ],
    ids=["validate", "payment", "apply", "confirm"],
)
async def test_failure_at_each_step_leaves_the_old_plan(
    fake: Any,
    payments: list[str],
    intent_status: str | None,
    refunded: bool,
    billing_worker: BillingWorkerFactory,
    stripe_provider: StripeProvider,
    localstripe: LocalStripe,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    tenant = await make_tenant()
    before = await tenant_state(owner_engine, tenant.tenant_id)
    card = await localstripe.payment_method(CARD_OK)
    async with billing_worker(fake, provider=stripe_provider):
        handle = await start_upgrade(temporal_client, settings, tenant, payment_method=card)
        error = await failure_of(handle)

    assert "injected" in error.message or "refused" in error.message
    state = await tenant_state(owner_engine, tenant.tenant_id)
    assert (state.plan, state.files_quota, state.features) == (
        before.plan,
        before.files_quota,
        before.features,
    )
    assert [status for status, _ in state.payments] == payments
    intents = await localstripe.intents()
    assert [i["status"] for i in intents] == ([intent_status] if intent_status else [])
    if intents:
        assert bool(await localstripe.refunds(intents[0]["id"])) is refunded
    assert mailbox.to(tenant.admin_email) == []
    if fake is confirm_fails:
        await record(handle, "tenant_upgrade_workflow--confirm-failed")
    if fake is capture_fails:
        await record_payment(temporal_client, handle, "payment_workflow--capture-failed")


async def test_manual_provider_end_to_end(
    billing_worker: BillingWorkerFactory,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    upgraded = await make_tenant("acme")
    declined = await make_tenant("globex")
    async with billing_worker():  # the manual provider
        result = await (await start_upgrade(temporal_client, settings, upgraded)).result()
        handle = await start_upgrade(
            temporal_client, settings, declined, payment_method=DECLINING_METHOD
        )
        error = await failure_of(handle)

    assert result.plan == Plan.PRO
    assert (result.intent_id or "").startswith("manual_")
    assert (await tenant_state(owner_engine, upgraded.tenant_id)).payments == [("captured", None)]
    mailbox.wait_for(upgraded.admin_email)
    assert error.type == PAYMENT_DECLINED
    state = await tenant_state(owner_engine, declined.tenant_id)
    assert state.plan == "free"
    assert [s for s, _ in state.payments] == ["declined"]


async def test_downgrade_charges_nothing_and_checks_usage(
    billing_worker: BillingWorkerFactory,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
) -> None:
    fits = await make_tenant("acme", Plan.PRO)
    too_big = await make_tenant("globex", Plan.PRO)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO files (id, tenant_id, name, content_type, size_bytes, storage_key,"
                " status) SELECT gen_random_uuid(), CAST(:t AS uuid), 'f' || n, 'text/plain', 1,"
                " 'k' || n, 'ready' FROM generate_series(1, :n) AS n"
            ),
            {"t": too_big.tenant_id, "n": PLANS[Plan.FREE].quotas.files + 1},
        )
    async with billing_worker():
        result = await (await start_upgrade(temporal_client, settings, fits, Plan.FREE)).result()
        handle = await start_upgrade(temporal_client, settings, too_big, Plan.FREE)
        error = await failure_of(handle)

    assert (result.direction, result.amount_cents, result.payment_id) == ("downgrade", 0, None)
    state = await tenant_state(owner_engine, fits.tenant_id)
    assert (state.plan, state.payments) == ("free", [])
    assert error.type == USAGE_EXCEEDS_PLAN
    assert "files" in error.message
    assert "free" in error.message
    assert (await tenant_state(owner_engine, too_big.tenant_id)).plan == "pro"


@activity.defn(name=CAPTURE_PAYMENT_ACTIVITY)
async def capture_hangs(request: PaymentStepInput) -> PaymentState:
    while True:  # until the cancel reaches it through the heartbeat
        activity.heartbeat()
        await asyncio.sleep(0.2)


async def test_cancel_before_capture_releases_the_authorization(
    billing_worker: BillingWorkerFactory,
    stripe_provider: StripeProvider,
    localstripe: LocalStripe,
    make_tenant: TenantFactory,
    temporal_client: Client,
    settings: Settings,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    card = await localstripe.payment_method(CARD_OK)
    async with billing_worker(capture_hangs, provider=stripe_provider):
        handle = await start_upgrade(temporal_client, settings, tenant, payment_method=card)
        payment = await payment_of(temporal_client, handle)
        await wait_until(lambda: _step_of(payment), "capture")
        [held] = await localstripe.intents()
        assert held["status"] == "requires_capture"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    [intent] = await localstripe.intents()
    assert intent["status"] == "canceled"
    state = await tenant_state(owner_engine, tenant.tenant_id)
    assert (state.plan, [s for s, _ in state.payments]) == ("free", ["cancelled"])
    await record(handle, "tenant_upgrade_workflow--cancelled")
    await record_payment(temporal_client, handle, "payment_workflow--cancelled")


async def _step_of(handle: WorkflowHandle[Any, Any]) -> str | None:
    try:
        snapshot = await handle.query(PROGRESS_QUERY, ProgressQuery(), result_type=ProgressSnapshot)
    except RPCError:
        return None  # not started yet
    return str(snapshot.step)


async def wait_until(probe: Callable[[], Awaitable[object]], expected: object) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while await probe() != expected:
        assert asyncio.get_running_loop().time() < deadline, f"never reached {expected!r}"
        await asyncio.sleep(0.1)
