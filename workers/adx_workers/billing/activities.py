"""Billing activities: the plan change (validate, apply, restore, confirm) and the payment steps.

Payments are exactly-once through the ``payments`` row keyed by the workflow-derived
idempotency key, not through the provider. The row is written before the intent is
created, the intent id is stored right after, and every later step reads the row (locked,
so an attempt that timed out but still runs and its retry cannot act side by side) and
acts only when the row says the step is still to do. A crash can at worst leave one
orphaned intent that was never confirmed: money moves only on authorize and capture, and
those act only on the recorded intent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core import context
from adx_core.contracts.billing import (
    APPLY_PLAN_ACTIVITY,
    AUTHORIZE_PAYMENT_ACTIVITY,
    CANCEL_PAYMENT_ACTIVITY,
    CAPTURE_PAYMENT_ACTIVITY,
    CONFIRM_PLAN_CHANGE_ACTIVITY,
    CREATE_PAYMENT_INTENT_ACTIVITY,
    INVALID_PLAN_CHANGE,
    PAYMENT_DECLINED,
    PAYMENT_REJECTED,
    REFUND_PAYMENT_ACTIVITY,
    RESTORE_PLAN_ACTIVITY,
    TENANT_NOT_FOUND,
    USAGE_EXCEEDS_PLAN,
    VALIDATE_PLAN_CHANGE_ACTIVITY,
    ApplyPlanInput,
    ApplyPlanResult,
    ChangeDirection,
    ConfirmPlanChangeInput,
    CreateIntentInput,
    PaymentState,
    PaymentStatus,
    PaymentStepInput,
    PaymentUndoResult,
    PlanChangeInput,
    PlanChangeRecipients,
    PlanChangeValidation,
    PlanState,
    RestorePlanInput,
    RestorePlanResult,
)
from adx_core.contracts.plans import (
    PLANS,
    QUOTA_NAMES,
    Plan,
    QuotaOverrides,
    Quotas,
    effective_quotas,
)
from adx_core.contracts.tenants import TenantStatus
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import (
    AuditEntry,
    File,
    Membership,
    Payment,
    Tenant,
    TenantQuota,
    TenantUsage,
    User,
)
from adx_core.db.repositories import AuditRepository
from adx_core.logging import get_logger
from adx_core.payments import (
    IntentRequest,
    IntentStatus,
    PaymentDeclinedError,
    PaymentProvider,
    PaymentRejectedError,
    RefundStatus,
)

log = get_logger(__name__)

_TENANT_ADMIN = "tenant-admin"
_FAILURE_CHARS = 500  # payments.failure


def _correlation_id() -> str | None:
    ctx = context.current()
    return ctx.correlation_id if ctx else None


def _overrides(row: TenantQuota | None) -> QuotaOverrides | None:
    if row is None or not row.overrides:
        return None
    return QuotaOverrides(
        **{name: value for name, value in row.overrides.items() if name in QUOTA_NAMES}
    )


def _plan_state(plan: Plan, row: TenantQuota | None) -> PlanState:
    if row is None:
        quotas = effective_quotas(plan)
        features = list(PLANS[plan].features)
    else:
        quotas = Quotas(
            storage_bytes=row.storage_bytes,
            files=row.files,
            users=row.users,
            db_rows=row.db_rows,
            file_bytes=row.file_bytes,
        )
        features = list(row.features)
    return PlanState(
        plan=plan,
        storage_bytes=quotas.storage_bytes,
        files=quotas.files,
        users=quotas.users,
        db_rows=quotas.db_rows,
        file_bytes=quotas.file_bytes,
        features=features,
    )


def _state_for(plan: Plan, row: TenantQuota | None) -> PlanState:
    """What ``plan`` means for this tenant: the plan's quotas with the tenant's overrides."""
    quotas = effective_quotas(plan, _overrides(row))
    return PlanState(plan=plan, features=list(PLANS[plan].features), **_quota_values(quotas))


def _quota_values(quotas: Quotas | PlanState) -> dict[str, int]:
    return {name: int(getattr(quotas, name)) for name in QUOTA_NAMES}


async def _set_plan_state(session: AsyncSession, tenant: Tenant, state: PlanState) -> None:
    tenant.plan = state.plan.value
    values = {**_quota_values(state), "features": list(state.features)}
    await session.execute(
        insert(TenantQuota)
        .values(tenant_id=tenant.id, **values)
        # The overrides column is left as it is: a plan change keeps the tenant's overrides.
        .on_conflict_do_update(
            index_elements=[TenantQuota.tenant_id], set_={**values, "updated_at": func.now()}
        )
    )


def _matches(tenant: Tenant, row: TenantQuota | None, state: PlanState) -> bool:
    return (
        tenant.plan == state.plan.value
        and row is not None
        and _quota_values(_plan_state(state.plan, row)) == _quota_values(state)
        and list(row.features) == list(state.features)
    )


async def _admin_emails(session: AsyncSession, tenant_id: uuid.UUID) -> list[str]:
    result = await session.scalars(
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id, Membership.role == _TENANT_ADMIN)
        .order_by(User.email)
    )
    return list(result.all())


def _not_found(tenant_id: str) -> ApplicationError:
    return ApplicationError(
        f"no such tenant: {tenant_id}", type=TENANT_NOT_FOUND, non_retryable=True
    )


def _rejected(err: PaymentRejectedError | str) -> ApplicationError:
    return ApplicationError(str(err)[:_FAILURE_CHARS], type=PAYMENT_REJECTED, non_retryable=True)


def _declined(code: str, message: str) -> ApplicationError:
    # The code and message travel as details too, so the workflows can name them exactly.
    return ApplicationError(
        f"the payment was declined ({code}): {message}",
        code,
        message,
        type=PAYMENT_DECLINED,
        non_retryable=True,
    )


def _state(row: Payment, *, acted: bool = False) -> PaymentState:
    return PaymentState(
        payment_id=str(row.id),
        provider=row.provider,
        intent_id=row.intent_id,
        status=PaymentStatus(row.status),
        amount_cents=int(row.amount_cents),
        currency=row.currency,
        acted=acted,
    )


class BillingActivities:
    def __init__(self, sessions: Sessions, provider: PaymentProvider) -> None:
        self._sessions = sessions
        self._provider = provider

    # --- the plan change -------------------------------------------------------------

    @activity.defn(name=VALIDATE_PLAN_CHANGE_ACTIVITY)
    async def validate_plan_change(self, request: PlanChangeInput) -> PlanChangeValidation:
        tenant_id = uuid.UUID(request.tenant_id)
        target = Plan(request.target_plan)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                raise _not_found(request.tenant_id)
            if tenant.status != TenantStatus.ACTIVE.value:
                raise ApplicationError(
                    f"the tenant is {tenant.status}; only an active tenant can change its plan",
                    type=INVALID_PLAN_CHANGE,
                    non_retryable=True,
                )
            current = Plan(tenant.plan)
            if current == target:
                raise ApplicationError(
                    f"the tenant is already on the {target.value} plan",
                    type=INVALID_PLAN_CHANGE,
                    non_retryable=True,
                )
            row = await session.get(TenantQuota, tenant_id)
            usage = await self._usage(session, tenant_id)
            emails = await _admin_emails(session, tenant_id)
            name = tenant.display_name
        new = effective_quotas(target, _overrides(row))
        for resource, used in usage.items():
            allowed = int(getattr(new, resource))
            if used > allowed:
                raise ApplicationError(
                    f"the tenant uses {used} {resource.replace('_', ' ')}; the {target.value} "
                    f"plan allows {allowed}",
                    resource,
                    used,
                    allowed,
                    type=USAGE_EXCEEDS_PLAN,
                    non_retryable=True,
                )
        upgrade = PLANS[target].rank > PLANS[current].rank
        amount = max(0, PLANS[target].price_cents - PLANS[current].price_cents) if upgrade else 0
        return PlanChangeValidation(
            tenant_id=request.tenant_id,
            tenant_name=name,
            current=_plan_state(current, row),
            target_plan=target,
            direction=ChangeDirection.UPGRADE if upgrade else ChangeDirection.DOWNGRADE,
            amount_cents=amount,
            currency=PLANS[target].currency,
            billing_email=emails[0] if emails else None,
        )

    async def _usage(self, session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, int]:
        files, stored = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(File.size_bytes), 0)).where(
                    File.tenant_id == tenant_id, File.status != "deleted"
                )
            )
        ).one()
        members = await session.scalar(
            select(func.count()).select_from(Membership).where(Membership.tenant_id == tenant_id)
        )
        sampled = await session.get(TenantUsage, tenant_id)
        # Storage: the larger of the live sum and the last sample, which also counts what
        # the file rows do not (thumbnails, exports).
        storage = max(int(stored), int(sampled.storage_bytes) if sampled else 0)
        return {"storage_bytes": storage, "files": int(files), "users": int(members or 0)}

    @activity.defn(name=APPLY_PLAN_ACTIVITY)
    async def apply_plan(self, request: ApplyPlanInput) -> ApplyPlanResult:
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id, with_for_update=True)
            if tenant is None:
                raise _not_found(request.tenant_id)
            row = await session.get(TenantQuota, tenant_id, with_for_update=True)
            previous = tenant.plan
            state = _state_for(Plan(request.plan), row)
            if _matches(tenant, row, state):
                return ApplyPlanResult(changed=False)  # a retry of a committed apply
            await _set_plan_state(session, tenant, state)
            await AuditRepository(session).record(
                tenant_id=tenant_id,
                action="tenant.plan_applied",
                actor_id=request.requested_by,
                subject=request.change_id,
                correlation_id=_correlation_id(),
                details={"from": previous, "to": state.plan.value},
            )
        log.info("plan applied", plan=state.plan.value)
        return ApplyPlanResult(changed=True)

    @activity.defn(name=RESTORE_PLAN_ACTIVITY)
    async def restore_plan(self, request: RestorePlanInput) -> RestorePlanResult:
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id, with_for_update=True)
            if tenant is None:
                return RestorePlanResult(undone=False)
            row = await session.get(TenantQuota, tenant_id, with_for_update=True)
            if _matches(tenant, row, request.previous):
                return RestorePlanResult(undone=False)
            changed_from = tenant.plan
            await _set_plan_state(session, tenant, request.previous)
            await AuditRepository(session).record(
                tenant_id=tenant_id,
                action="tenant.plan_restored",
                actor_id=request.requested_by,
                subject=request.change_id,
                correlation_id=_correlation_id(),
                details={"from": changed_from, "to": request.previous.plan.value},
            )
        log.info("plan restored", plan=request.previous.plan.value)
        return RestorePlanResult(undone=True)

    @activity.defn(name=CONFIRM_PLAN_CHANGE_ACTIVITY)
    async def confirm_plan_change(self, request: ConfirmPlanChangeInput) -> PlanChangeRecipients:
        tenant_id = uuid.UUID(request.tenant_id)
        action = "tenant.plan_changed"
        async with tenant_session(self._sessions, tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                raise _not_found(request.tenant_id)
            recorded = await session.scalar(
                select(AuditEntry.id).where(
                    AuditEntry.action == action, AuditEntry.subject == request.change_id
                )
            )
            if recorded is None:
                await AuditRepository(session).record(
                    tenant_id=tenant_id,
                    action=action,
                    actor_id=request.requested_by,
                    subject=request.change_id,
                    correlation_id=_correlation_id(),
                    details={
                        "from": request.previous_plan.value,
                        "to": request.plan.value,
                        "payment_id": request.payment_id,
                    },
                )
            emails = await _admin_emails(session, tenant_id)
            return PlanChangeRecipients(tenant_name=tenant.display_name, emails=emails)

    # --- the payment ------------------------------------------------------------------

    async def _locked(self, session: AsyncSession, key: str) -> Payment | None:
        row: Payment | None = await session.scalar(
            select(Payment).where(Payment.idempotency_key == key).with_for_update()
        )
        return row

    @activity.defn(name=CREATE_PAYMENT_INTENT_ACTIVITY)
    async def create_payment_intent(self, request: CreateIntentInput) -> PaymentState:
        tenant_id = uuid.UUID(request.tenant_id)
        # First the record, committed on its own: it exists before anything can exist at
        # the provider.
        async with tenant_session(self._sessions, tenant_id) as session:
            await session.execute(
                insert(Payment)
                .values(
                    id=uuid.uuid4(),
                    tenant_id=tenant_id,
                    idempotency_key=request.idempotency_key,
                    provider=self._provider.name,
                    amount_cents=request.amount_cents,
                    currency=request.currency,
                    status=PaymentStatus.CREATED.value,
                )
                .on_conflict_do_nothing(index_elements=[Payment.idempotency_key])
            )
        async with tenant_session(self._sessions, tenant_id) as session:
            row = await self._locked(session, request.idempotency_key)
            if row is None:
                raise _rejected("the payment record belongs to another tenant")
            if row.provider != self._provider.name:
                raise _rejected(
                    f"the payment was started with the {row.provider} provider, "
                    f"not {self._provider.name}"
                )
            if row.intent_id is not None or row.status != PaymentStatus.CREATED.value:
                return _state(row)  # created before (a retry), or already cancelled
            try:
                intent = await self._provider.create_intent(
                    IntentRequest(
                        amount_cents=request.amount_cents,
                        currency=request.currency,
                        idempotency_key=request.idempotency_key,
                        description=request.description,
                        customer_email=request.customer_email,
                        metadata=request.metadata,
                    )
                )
            except PaymentRejectedError as err:
                raise _rejected(err) from None
            row.intent_id = intent.intent_id
        log.info("payment intent created", provider=self._provider.name)
        return _state(row, acted=True)

    @activity.defn(name=AUTHORIZE_PAYMENT_ACTIVITY)
    async def authorize_payment(self, request: PaymentStepInput) -> PaymentState:
        declined: PaymentDeclinedError | None = None
        async with tenant_session(self._sessions, request.tenant_id) as session:
            row = await self._existing(session, request.idempotency_key)
            status = PaymentStatus(row.status)
            if status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED):
                return _state(row)
            if status is PaymentStatus.DECLINED:
                code, _, message = (row.failure or "declined: ").partition(": ")
                raise _declined(code, message)
            if status is not PaymentStatus.CREATED or row.intent_id is None:
                raise _rejected(f"cannot authorize a payment that is {status.value}")
            try:
                intent = await self._provider.authorize(
                    row.intent_id, request.payment_method, request.idempotency_key
                )
            except PaymentDeclinedError as err:
                # Recorded, and committed before the error is raised: a retry (or a repeated
                # request) answers from the record, and the card is not tried again.
                row.status = PaymentStatus.DECLINED.value
                row.failure = f"{err.code}: {err.message}"[:_FAILURE_CHARS]
                declined = err
            except PaymentRejectedError as err:
                raise _rejected(err) from None
            else:
                if intent.status is not IntentStatus.AUTHORIZED:
                    # Captured already would mean someone else captured it: not ours.
                    raise _rejected(f"the intent is {intent.status.value} after authorizing")
                row.status = PaymentStatus.AUTHORIZED.value
        if declined is not None:
            log.info("payment declined", code=declined.code)
            raise _declined(declined.code, declined.message)
        log.info("payment authorized")
        return _state(row, acted=True)

    @activity.defn(name=CAPTURE_PAYMENT_ACTIVITY)
    async def capture_payment(self, request: PaymentStepInput) -> PaymentState:
        async with tenant_session(self._sessions, request.tenant_id) as session:
            row = await self._existing(session, request.idempotency_key)
            status = PaymentStatus(row.status)
            if status is PaymentStatus.CAPTURED:
                return _state(row)  # the record says it is done: never capture again
            if status is not PaymentStatus.AUTHORIZED or row.intent_id is None:
                raise _rejected(f"cannot capture a payment that is {status.value}")
            try:
                intent = await self._provider.capture(row.intent_id, request.idempotency_key)
            except PaymentRejectedError as err:
                raise _rejected(err) from None
            if intent.status is not IntentStatus.CAPTURED:
                raise _rejected(f"the intent is {intent.status.value} after capturing")
            row.status = PaymentStatus.CAPTURED.value
        log.info("payment captured")
        return _state(row, acted=True)

    @activity.defn(name=CANCEL_PAYMENT_ACTIVITY)
    async def cancel_payment(self, request: PaymentStepInput) -> PaymentUndoResult:
        """Release what was held. A no-op when nothing is held (or it was captured: that is
        refund_payment_activity's to give back)."""
        async with tenant_session(self._sessions, request.tenant_id) as session:
            row = await self._locked(session, request.idempotency_key)
            if row is None:
                return PaymentUndoResult(undone=False)
            status = PaymentStatus(row.status)
            if status not in (
                PaymentStatus.CREATED,
                PaymentStatus.AUTHORIZED,
                PaymentStatus.DECLINED,
            ):
                return PaymentUndoResult(undone=False, status=status)
            if row.intent_id is not None:
                try:
                    intent = await self._provider.cancel(row.intent_id, request.idempotency_key)
                except PaymentRejectedError as err:
                    raise _rejected(err) from None
                if intent.status is IntentStatus.CAPTURED:
                    # Captured by an attempt whose result was lost: record the truth.
                    row.status = PaymentStatus.CAPTURED.value
                    log.warning("cancel found the payment captured")
                    return PaymentUndoResult(undone=False, status=PaymentStatus.CAPTURED)
            if status is not PaymentStatus.DECLINED:  # a declined row keeps saying why
                row.status = PaymentStatus.CANCELLED.value
            result = PaymentUndoResult(undone=True, status=PaymentStatus(row.status))
        log.info("payment cancelled")
        return result

    @activity.defn(name=REFUND_PAYMENT_ACTIVITY)
    async def refund_payment(self, request: PaymentStepInput) -> PaymentUndoResult:
        async with tenant_session(self._sessions, request.tenant_id) as session:
            row = await self._locked(session, request.idempotency_key)
            if row is None or row.intent_id is None:
                return PaymentUndoResult(undone=False)
            status = PaymentStatus(row.status)
            if status is PaymentStatus.AUTHORIZED:
                # The capture may have happened with its result lost: ask the provider.
                intent = await self._provider.retrieve(row.intent_id)
                if intent.status is not IntentStatus.CAPTURED:
                    return PaymentUndoResult(undone=False, status=status)
            elif status is not PaymentStatus.CAPTURED:
                return PaymentUndoResult(undone=False, status=status)
            try:
                refund = await self._provider.refund(row.intent_id, request.idempotency_key)
            except PaymentRejectedError as err:
                raise _rejected(err) from None
            if refund.status is RefundStatus.FAILED:
                raise _rejected(f"the provider could not refund {row.intent_id}")
            row.status = PaymentStatus.REFUNDED.value
        log.info("payment refunded")
        return PaymentUndoResult(undone=True, status=PaymentStatus.REFUNDED)

    async def _existing(self, session: AsyncSession, key: str) -> Payment:
        row = await self._locked(session, key)
        if row is None:
            raise _rejected("there is no payment record for this key")
        return row

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.validate_plan_change,
            self.apply_plan,
            self.restore_plan,
            self.confirm_plan_change,
            self.create_payment_intent,
            self.authorize_payment,
            self.capture_payment,
            self.cancel_payment,
            self.refund_payment,
        ]
