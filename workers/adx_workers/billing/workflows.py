"""tenant_upgrade_workflow and its child payment_workflow.

The upgrade validates the change, has the child authorize and capture the price
difference, applies the new plan and confirms it to the tenant's admins. Each step
registers its undo before it runs; a failure or a cancel after the capture refunds and
restores the old plan, and a declined payment changes nothing and says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
)
from temporalio.workflow import (
    ActivityCancellationType,
    ChildWorkflowCancellationType,
    ParentClosePolicy,
)

from adx_core.contracts.billing import (
    APPLY_PLAN_ACTIVITY,
    AUTHORIZE_PAYMENT_ACTIVITY,
    CANCEL_PAYMENT_ACTIVITY,
    CAPTURE_PAYMENT_ACTIVITY,
    CONFIRM_PLAN_CHANGE_ACTIVITY,
    CREATE_PAYMENT_INTENT_ACTIVITY,
    NON_RETRYABLE_ERRORS,
    PAYMENT_DECLINED,
    PAYMENT_WORKFLOW,
    REFUND_PAYMENT_ACTIVITY,
    RESTORE_PLAN_ACTIVITY,
    TENANT_UPGRADE_WORKFLOW,
    VALIDATE_PLAN_CHANGE_ACTIVITY,
    ApplyPlanInput,
    ApplyPlanResult,
    ConfirmPlanChangeInput,
    CreateIntentInput,
    PaymentRequest,
    PaymentResult,
    PaymentState,
    PaymentStepInput,
    PaymentUndoResult,
    PlanChangeInput,
    PlanChangeRecipients,
    PlanChangeValidation,
    RestorePlanInput,
    RestorePlanResult,
    TenantUpgradeRequest,
    UpgradeResult,
    notification_key,
    payment_idempotency_key,
    payment_workflow_id,
)
from adx_core.contracts.notifications import (
    NOTIFICATION_REJECTED,
    SEND_NOTIFICATION_ACTIVITY,
    NotificationRequest,
    NotificationResult,
    Template,
)
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_workers.common.progress import ProgressTracker
from adx_workers.common.saga import Saga

Result = TypeVar("Result")

UPGRADE_STEPS = {
    "validate_plan_change": 10,
    "payment": 60,
    "apply_plan": 85,
    "confirm_plan_change": 95,
}
PAYMENT_STEPS = {"create_intent": 20, "authorize": 60, "capture": 95}

# Database calls take milliseconds; a call stuck this long is cut off and retried.
_DB_TIMEOUT = timedelta(seconds=10)
# A provider call is bounded by the client's own 20 s timeout, plus the row lock it holds.
_PROVIDER_TIMEOUT = timedelta(seconds=30)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
    non_retryable_error_types=[*NON_RETRYABLE_ERRORS, NOTIFICATION_REJECTED],
)
# A step that keeps failing this long gives up and the saga rolls back: an upgrade is not
# left half-done (and a card not left held) waiting for an outage to end.
_STEP_DEADLINE = timedelta(minutes=5)
# Undos must finish even when what they clean up is flaky; a refund above all.
_UNDO_DEADLINE = timedelta(minutes=30)


async def _activity(
    activity: str,
    arg: object,
    result_type: type[Result],
    *,
    start_to_close: timedelta = _DB_TIMEOUT,
) -> Result:
    result: Result = await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=start_to_close,
        schedule_to_close_timeout=_STEP_DEADLINE,
        retry_policy=_RETRY,
        # A cancel waits for the step in flight to end, so its undo never races it.
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )
    if workflow.cancellation_reason() is not None:
        # The cancel arrived while the step ran and the step succeeded anyway: honour the
        # cancel now rather than carry on (the step's undo is already registered).
        raise asyncio.CancelledError
    return result


async def _undo(
    activity: str,
    arg: object,
    result_type: type[Result],
    *,
    start_to_close: timedelta = _DB_TIMEOUT,
) -> Result:
    result: Result = await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=start_to_close,
        schedule_to_close_timeout=_UNDO_DEADLINE,
        retry_policy=RetryPolicy(
            maximum_interval=timedelta(seconds=30),
            non_retryable_error_types=list(NON_RETRYABLE_ERRORS),
        ),
    )
    return result


def _is_cancellation(err: BaseException) -> bool:
    return (
        workflow.cancellation_reason() is not None
        or isinstance(err, asyncio.CancelledError)
        or (isinstance(err, ActivityError | ChildWorkflowError) and _cancelled_cause(err))
    )


def _cancelled_cause(err: FailureError) -> bool:
    cause = err.cause
    while isinstance(cause, ActivityError | ChildWorkflowError):
        cause = cause.cause
    return isinstance(cause, CancelledError)


def _root(err: BaseException) -> BaseException:
    while isinstance(err, ActivityError | ChildWorkflowError) and err.cause is not None:
        err = err.cause
    return err


def _describe(err: BaseException) -> str:
    if _is_cancellation(err):
        return "cancelled"
    root = _root(err)
    return str(root) or type(root).__name__


def _decline(err: BaseException) -> tuple[str, str] | None:
    """The decline code and message, if ``err`` is (or wraps) a declined payment."""
    root = _root(err)
    if isinstance(root, ApplicationError) and root.type == PAYMENT_DECLINED:
        details: Sequence[object] = root.details
        code = str(details[0]) if len(details) > 0 else "declined"
        message = str(details[1]) if len(details) > 1 else root.message
        return code, message
    return None


def _declined_error(code: str, message: str) -> ApplicationError:
    return ApplicationError(
        f"the payment was declined ({code}): {message}",
        code,
        message,
        type=PAYMENT_DECLINED,
        non_retryable=True,
    )


class _SagaWorkflow:
    """The failure handling both workflows share: record the failed step, run the undos in
    reverse, and end as cancelled, declined or failed."""

    def __init__(self, steps: dict[str, int]) -> None:
        self._progress = ProgressTracker(steps)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    async def _fail(self, saga: Saga, step: str, err: BaseException) -> BaseException | None:
        """Compensate, then return what the workflow should raise instead of ``err``
        (``None``: ``err`` itself)."""
        self._progress.failed(step, _describe(err))
        # Cleanup runs even when the workflow was cancelled: the cancel hit the step in
        # flight, and the undos are new activities that are not cancelled.
        try:
            await saga.compensate(self._progress.compensating)
        except (ActivityError, ApplicationError) as undo_error:
            # Reported, not raised: the operation failed because of ``err``; what could not
            # be cleaned up is in the progress log (and the worker's log) for operators.
            self._progress.compensation_failed(_describe(undo_error))
            workflow.logger.error("compensation incomplete", extra={"step": step})
        self._progress.done("rolled_back", complete=False)
        if _is_cancellation(err):
            return asyncio.CancelledError()
        decline = _decline(err)
        if decline is not None:
            return _declined_error(*decline)
        return None


# PINNED under Worker Versioning (set as the deployment default once versioned, as for
# provisioning): a payment in flight must finish on the code that started it.
@workflow.defn(name=PAYMENT_WORKFLOW)
class PaymentWorkflow(_SagaWorkflow):
    def __init__(self) -> None:
        super().__init__(PAYMENT_STEPS)

    @workflow.run
    async def run(self, request: PaymentRequest) -> PaymentResult:
        saga = Saga()
        step_input = PaymentStepInput(
            request.tenant_id, request.idempotency_key, request.payment_method
        )
        step = "create_intent"
        try:
            self._progress.started(step)
            # One undo for create and authorize: cancelling releases a hold, and is a no-op
            # for an intent never confirmed or never created.
            saga.push(
                step,
                lambda: _undo(
                    CANCEL_PAYMENT_ACTIVITY,
                    step_input,
                    PaymentUndoResult,
                    start_to_close=_PROVIDER_TIMEOUT,
                ),
            )
            await _activity(
                CREATE_PAYMENT_INTENT_ACTIVITY,
                CreateIntentInput(
                    tenant_id=request.tenant_id,
                    idempotency_key=request.idempotency_key,
                    amount_cents=request.amount_cents,
                    currency=request.currency,
                    description=request.description,
                    customer_email=request.customer_email,
                    metadata=request.metadata,
                ),
                PaymentState,
                start_to_close=_PROVIDER_TIMEOUT,
            )
            self._progress.finished(step)

            step = "authorize"
            self._progress.started(step)
            await _activity(
                AUTHORIZE_PAYMENT_ACTIVITY,
                step_input,
                PaymentState,
                start_to_close=_PROVIDER_TIMEOUT,
            )
            self._progress.finished(step)

            step = "capture"
            self._progress.started(step)
            # A capture whose answer was lost may still have taken the money.
            saga.push(
                step,
                lambda: _undo(
                    REFUND_PAYMENT_ACTIVITY,
                    step_input,
                    PaymentUndoResult,
                    start_to_close=_PROVIDER_TIMEOUT,
                ),
            )
            state = await _activity(
                CAPTURE_PAYMENT_ACTIVITY, step_input, PaymentState, start_to_close=_PROVIDER_TIMEOUT
            )
            self._progress.finished(step)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            instead = await self._fail(saga, step, err)
            if instead is None:
                raise
            raise instead from err

        self._progress.done()
        assert state.intent_id is not None  # captured implies an intent
        return PaymentResult(
            payment_id=state.payment_id,
            provider=state.provider,
            intent_id=state.intent_id,
            status=state.status,
            amount_cents=state.amount_cents,
            currency=state.currency,
        )


@workflow.defn(name=TENANT_UPGRADE_WORKFLOW)
class TenantUpgradeWorkflow(_SagaWorkflow):
    def __init__(self) -> None:
        super().__init__(UPGRADE_STEPS)

    @workflow.run
    async def run(self, request: TenantUpgradeRequest) -> UpgradeResult:
        info = workflow.info()
        saga = Saga()
        payment: PaymentResult | None = None
        step = "validate_plan_change"
        try:
            self._progress.started(step)
            change = await _activity(
                VALIDATE_PLAN_CHANGE_ACTIVITY,
                PlanChangeInput(request.tenant_id, request.target_plan),
                PlanChangeValidation,
            )
            self._progress.count("amount_cents", change.amount_cents)
            self._progress.finished(step)

            if change.amount_cents > 0:
                step = "payment"
                self._progress.started(step)
                payment = await self._pay(saga, request, change)
                self._progress.finished(step)

            step = "apply_plan"
            self._progress.started(step)
            restore = RestorePlanInput(
                request.tenant_id, change.current, info.workflow_id, request.requested_by
            )
            saga.push(step, lambda: _undo(RESTORE_PLAN_ACTIVITY, restore, RestorePlanResult))
            await _activity(
                APPLY_PLAN_ACTIVITY,
                ApplyPlanInput(
                    request.tenant_id,
                    request.target_plan,
                    info.workflow_id,
                    request.requested_by,
                ),
                ApplyPlanResult,
            )
            self._progress.finished(step)

            step = "confirm_plan_change"
            self._progress.started(step)
            await self._confirm(request, change, payment)
            self._progress.finished(step)
        except (ActivityError, ChildWorkflowError, ApplicationError, asyncio.CancelledError) as e:
            instead = await self._fail(saga, step, e)
            if instead is None:
                raise
            raise instead from e

        self._progress.done()
        return UpgradeResult(
            tenant_id=request.tenant_id,
            previous_plan=change.current.plan,
            plan=request.target_plan,
            direction=change.direction,
            amount_cents=change.amount_cents,
            currency=change.currency,
            payment_id=payment.payment_id if payment else None,
            intent_id=payment.intent_id if payment else None,
        )

    async def _pay(
        self, saga: Saga, request: TenantUpgradeRequest, change: PlanChangeValidation
    ) -> PaymentResult:
        info = workflow.info()
        key = payment_idempotency_key(info.workflow_id, info.run_id)
        # Registered before the child starts: whatever it did (and a child that was
        # cancelled releases its own hold), a refund is a no-op unless money was taken.
        refund = PaymentStepInput(request.tenant_id, key)
        saga.push(
            "payment",
            lambda: _undo(
                REFUND_PAYMENT_ACTIVITY, refund, PaymentUndoResult, start_to_close=_PROVIDER_TIMEOUT
            ),
        )
        result: PaymentResult = await workflow.execute_child_workflow(
            PAYMENT_WORKFLOW,
            PaymentRequest(
                tenant_id=request.tenant_id,
                idempotency_key=key,
                amount_cents=change.amount_cents,
                currency=change.currency,
                description=(
                    f"{change.tenant_name}: {change.current.plan.value} to "
                    f"{request.target_plan.value} plan"
                ),
                payment_method=request.payment_method,
                customer_email=change.billing_email,
                metadata={
                    "tenant_id": request.tenant_id,
                    "plan": request.target_plan.value,
                    "upgrade_workflow_id": info.workflow_id,
                },
            ),
            id=payment_workflow_id(request.tenant_id, workflow.uuid4().hex[:16]),
            result_type=PaymentResult,
            # The payment is found under the same tenant and correlation id as its upgrade.
            search_attributes=info.typed_search_attributes,
            # A cancelled upgrade waits for the payment to release its hold; a terminated
            # one still asks the payment to cancel (and so release) rather than kill it.
            cancellation_type=ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        if workflow.cancellation_reason() is not None:
            raise asyncio.CancelledError
        return result

    async def _confirm(
        self,
        request: TenantUpgradeRequest,
        change: PlanChangeValidation,
        payment: PaymentResult | None,
    ) -> None:
        info = workflow.info()
        recipients = await _activity(
            CONFIRM_PLAN_CHANGE_ACTIVITY,
            ConfirmPlanChangeInput(
                tenant_id=request.tenant_id,
                previous_plan=change.current.plan,
                plan=request.target_plan,
                change_id=info.workflow_id,
                requested_by=request.requested_by,
                payment_id=payment.payment_id if payment else None,
            ),
            PlanChangeRecipients,
        )
        sends = [
            _activity(
                SEND_NOTIFICATION_ACTIVITY,
                NotificationRequest(
                    key=notification_key(info.run_id, index),
                    tenant_id=request.tenant_id,
                    to=email,
                    template=Template.PLAN_CHANGED,
                    params={
                        "tenant_name": recipients.tenant_name,
                        "plan": request.target_plan.value,
                        "old_plan": change.current.plan.value,
                    },
                ),
                NotificationResult,
            )
            for index, email in enumerate(recipients.emails)
        ]
        await asyncio.gather(*sends)
