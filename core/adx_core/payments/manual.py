"""The manual provider, for development and for tenants invoiced outside the platform.

It moves no money. Its intents exist only as the payments rows the billing activities
write (it keeps no state of its own), it authorizes and captures everything, and every
call is a no-op that can be repeated. The payment method ``manual_decline`` declines, so
that the declined-payment path can be exercised without a card network.
"""

from __future__ import annotations

import hashlib

from adx_core.payments.base import (
    Intent,
    IntentRequest,
    IntentStatus,
    PaymentDeclinedError,
    Refund,
    RefundStatus,
)

DECLINING_METHOD = "manual_decline"


class ManualProvider:
    name = "manual"

    async def create_intent(self, request: IntentRequest) -> Intent:
        # Derived from the key: creating again for the same payment names the same intent.
        digest = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:24]
        return Intent(
            f"manual_{digest}", IntentStatus.CREATED, request.amount_cents, request.currency
        )

    async def retrieve(self, intent_id: str) -> Intent:
        # Nothing is held anywhere, so there is never anything to find or give back.
        return Intent(intent_id, IntentStatus.CREATED, 0, "")

    async def authorize(
        self, intent_id: str, payment_method: str | None, idempotency_key: str
    ) -> Intent:
        if payment_method == DECLINING_METHOD:
            raise PaymentDeclinedError("card_declined", "the manual provider declines this method")
        return Intent(intent_id, IntentStatus.AUTHORIZED, 0, "")

    async def capture(self, intent_id: str, idempotency_key: str) -> Intent:
        return Intent(intent_id, IntentStatus.CAPTURED, 0, "")

    async def cancel(self, intent_id: str, idempotency_key: str) -> Intent:
        return Intent(intent_id, IntentStatus.CANCELLED, 0, "")

    async def refund(self, intent_id: str, idempotency_key: str) -> Refund:
        return Refund(f"manual_refund_{intent_id}", RefundStatus.SUCCEEDED, 0)

    async def close(self) -> None:
        return None
