"""The payment provider interface: manual-capture intents, in the steps a payment takes.

A provider moves money only on ``authorize`` (the hold) and ``capture`` (the charge), and
``refund`` gives it back. Each method is safe to call again for the same intent: it looks
at the intent first and returns the current state when the work is already done. That is
the provider's half of exactly-once; the other half is the payments row (see
adx_workers.billing.activities), which never depends on the provider honouring an
Idempotency-Key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class IntentStatus(StrEnum):
    CREATED = "created"  # waiting for a payment method or a confirmation
    REQUIRES_ACTION = "requires_action"  # the customer must authenticate (3-D Secure)
    PROCESSING = "processing"
    AUTHORIZED = "authorized"  # the amount is held, waiting for capture
    CAPTURED = "captured"
    CANCELLED = "cancelled"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class IntentRequest:
    amount_cents: int
    currency: str
    idempotency_key: str
    description: str
    customer_email: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Intent:
    intent_id: str
    status: IntentStatus
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Refund:
    refund_id: str
    status: RefundStatus
    amount_cents: int


class PaymentDeclinedError(Exception):
    """The payment method was declined: a final answer about this attempt, not an outage."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PaymentRejectedError(Exception):
    """The provider refused the request itself (bad parameters, wrong state, bad key).
    Retrying the same request cannot help."""


class PaymentProvider(Protocol):
    """Every other exception a method raises is transient (network, rate limit, 5xx)."""

    @property
    def name(self) -> str: ...

    async def create_intent(self, request: IntentRequest) -> Intent: ...

    async def retrieve(self, intent_id: str) -> Intent: ...

    async def authorize(
        self, intent_id: str, payment_method: str | None, idempotency_key: str
    ) -> Intent:
        """Confirm the intent with the payment method; raise PaymentDeclinedError."""
        ...

    async def capture(self, intent_id: str, idempotency_key: str) -> Intent: ...

    async def cancel(self, intent_id: str, idempotency_key: str) -> Intent:
        """Release an authorization. An intent already captured is returned as it is:
        giving captured money back is ``refund``'s decision, not a side effect of this."""
        ...

    async def refund(self, intent_id: str, idempotency_key: str) -> Refund: ...

    async def close(self) -> None: ...
