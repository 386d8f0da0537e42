"""Billing contracts: tenant_upgrade_workflow and its child payment_workflow.

Both run on the tenants task queue. The payment is exactly-once through our own record
(the ``payments`` row keyed by ``idempotency_key``), never through the provider's
Idempotency-Key alone: some providers (and test servers) ignore it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from adx_core.contracts.plans import Plan

TENANT_UPGRADE_WORKFLOW = "tenant_upgrade_workflow"
PAYMENT_WORKFLOW = "payment_workflow"

# Activities of tenant_upgrade_workflow.
VALIDATE_PLAN_CHANGE_ACTIVITY = "validate_plan_change_activity"
APPLY_PLAN_ACTIVITY = "apply_plan_activity"
RESTORE_PLAN_ACTIVITY = "restore_plan_activity"
CONFIRM_PLAN_CHANGE_ACTIVITY = "confirm_plan_change_activity"
# Activities of payment_workflow. Each first reads the payments row and acts only on what
# the row says is still to do.
CREATE_PAYMENT_INTENT_ACTIVITY = "create_payment_intent_activity"
AUTHORIZE_PAYMENT_ACTIVITY = "authorize_payment_activity"
CAPTURE_PAYMENT_ACTIVITY = "capture_payment_activity"
CANCEL_PAYMENT_ACTIVITY = "cancel_payment_activity"
REFUND_PAYMENT_ACTIVITY = "refund_payment_activity"

# ApplicationError types the callers can rely on; all are non-retryable.
PAYMENT_DECLINED = "PaymentDeclined"
PAYMENT_REJECTED = "PaymentRejected"  # the provider refused the request (not a decline)
INVALID_PLAN_CHANGE = "InvalidPlanChange"
USAGE_EXCEEDS_PLAN = "UsageExceedsPlan"
TENANT_NOT_FOUND = "TenantNotFound"

NON_RETRYABLE_ERRORS = (
    PAYMENT_DECLINED,
    PAYMENT_REJECTED,
    INVALID_PLAN_CHANGE,
    USAGE_EXCEEDS_PLAN,
    TENANT_NOT_FOUND,
)

# What an Idempotency-Key header may hold: printable ASCII, bounded.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"


def upgrade_workflow_id(tenant_id: str, idempotency_key: str | None = None) -> str:
    """One upgrade per tenant at a time without a key; with a key, one per (tenant, key),
    so a repeated request joins or finds the same operation instead of charging again.

    The key is hashed: any printable key then yields a short operation id of the allowed
    alphabet (lower-case letters, digits, hyphens; at most 81 characters).
    """
    if idempotency_key is None:
        return f"tenant-upgrade-{tenant_id}"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    return f"tenant-upgrade-{tenant_id}-{digest}"


def payment_workflow_id(tenant_id: str, unique: str) -> str:
    # Not derived from the parent's id: a replay (tests/replay) runs a history under another
    # workflow id, and a child id must come out the same. ``unique`` is workflow.uuid4().
    return f"payment-{tenant_id}-{unique}"


def notification_key(run_id: str, index: int) -> str:
    # The run id is unique, and recipients come in a fixed order from one activity result.
    return f"plan-changed:{run_id}:{index}"


def payment_idempotency_key(upgrade_id: str, run_id: str) -> str:
    # Derived from the workflow id (what the caller repeats) and the run, so a later run of
    # the same id (allowed after a failure) is a new payment, while any retry within a run
    # finds the same row.
    return f"{upgrade_id}/{run_id}"


class ChangeDirection(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"


class PaymentStatus(StrEnum):
    """The ``payments.status`` values (the migration checks the same list)."""

    CREATED = "created"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    DECLINED = "declined"


@dataclass(frozen=True)
class TenantUpgradeRequest:
    tenant_id: str
    target_plan: Plan
    requested_by: str
    # The provider's payment method (a Stripe PaymentMethod id; "manual_decline" makes the
    # manual provider decline). Not needed when nothing is charged (a downgrade).
    payment_method: str | None = None


@dataclass(frozen=True)
class UpgradeResult:
    tenant_id: str
    previous_plan: Plan
    plan: Plan
    direction: ChangeDirection
    amount_cents: int
    currency: str
    payment_id: str | None = None
    intent_id: str | None = None


@dataclass(frozen=True)
class PlanChangeInput:
    tenant_id: str
    target_plan: Plan


@dataclass(frozen=True)
class PlanState:
    """What a tenant's plan is made of, enough to restore it exactly."""

    plan: Plan
    storage_bytes: int
    files: int
    users: int
    db_rows: int
    file_bytes: int
    features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlanChangeValidation:
    tenant_id: str
    tenant_name: str
    current: PlanState
    target_plan: Plan
    direction: ChangeDirection
    amount_cents: int
    currency: str
    # Who the payment provider's customer record names: the tenant's first admin.
    billing_email: str | None = None


@dataclass(frozen=True)
class ApplyPlanInput:
    tenant_id: str
    plan: Plan
    change_id: str
    requested_by: str


@dataclass(frozen=True)
class ApplyPlanResult:
    changed: bool


@dataclass(frozen=True)
class RestorePlanInput:
    tenant_id: str
    previous: PlanState
    change_id: str
    requested_by: str


@dataclass(frozen=True)
class RestorePlanResult:
    undone: bool


@dataclass(frozen=True)
class ConfirmPlanChangeInput:
    tenant_id: str
    previous_plan: Plan
    plan: Plan
    change_id: str
    requested_by: str
    payment_id: str | None = None


@dataclass(frozen=True)
class PlanChangeRecipients:
    tenant_name: str
    emails: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PaymentRequest:
    tenant_id: str
    idempotency_key: str
    amount_cents: int
    currency: str
    description: str
    payment_method: str | None = None
    customer_email: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentResult:
    payment_id: str
    provider: str
    intent_id: str
    status: PaymentStatus
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class CreateIntentInput:
    tenant_id: str
    idempotency_key: str
    amount_cents: int
    currency: str
    description: str
    customer_email: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentStepInput:
    tenant_id: str
    idempotency_key: str
    payment_method: str | None = None


@dataclass(frozen=True)
class PaymentState:
    payment_id: str
    provider: str
    intent_id: str | None
    status: PaymentStatus
    amount_cents: int
    currency: str
    # True when this call acted at the provider; False when the record said it was done.
    acted: bool = False


@dataclass(frozen=True)
class PaymentUndoResult:
    undone: bool
    status: PaymentStatus | None = None
