"""Stripe, through the official SDK's async client (``StripeClient`` over aiohttp).

Intents use manual capture: ``authorize`` confirms (the card is held), ``capture`` takes
the money. The SDK's own network retries are off: retries come from the activity's retry
policy, and each method looks at the intent before acting, so a retry never acts twice
even against a server that ignores Idempotency-Key (as localstripe does). Idempotency keys
are still sent, for Stripe's benefit.

The description travels in the customer record and the intent's metadata rather than the
intent's ``description`` field, which localstripe does not accept. For the same reason the
intent is limited to cards (``allowed_payment_method_types``, the SDK's API version) only
against Stripe itself: localstripe speaks an older API version that rejects the parameter.
Without the limit Stripe would offer redirect-based methods, which a server-side confirm
cannot complete.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import stripe

from adx_core.payments.base import (
    Intent,
    IntentRequest,
    IntentStatus,
    PaymentDeclinedError,
    PaymentRejectedError,
    Refund,
    RefundStatus,
)

# A Stripe call answers in well under a second; past this the activity is retried.
_REQUEST_TIMEOUT_SECONDS = 20.0

_STATUS = {
    "requires_payment_method": IntentStatus.CREATED,
    "requires_confirmation": IntentStatus.CREATED,
    "requires_action": IntentStatus.REQUIRES_ACTION,
    "processing": IntentStatus.PROCESSING,
    "requires_capture": IntentStatus.AUTHORIZED,
    "succeeded": IntentStatus.CAPTURED,
    "canceled": IntentStatus.CANCELLED,
}
_REFUND_STATUS = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
}


def _intent(obj: stripe.PaymentIntent) -> Intent:
    return Intent(
        intent_id=obj.id,
        status=_STATUS.get(obj.status, IntentStatus.PROCESSING),
        amount_cents=int(obj.amount),
        currency=str(obj.currency),
    )


def _declined(err: stripe.CardError) -> PaymentDeclinedError:
    detail = err.error
    code = (detail.decline_code if detail else None) or err.code or "card_declined"
    return PaymentDeclinedError(code, err.user_message or "the card was declined")


class StripeProvider:
    name = "stripe"

    def __init__(
        self, api_key: str, api_base: str | None = None, *, cards_only: bool | None = None
    ) -> None:
        # A custom base is a test server (localstripe): see the module docstring.
        self._cards_only = api_base is None if cards_only is None else cards_only
        self._http = stripe.AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_SECONDS)
        )
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=0,
        )

    async def create_intent(self, request: IntentRequest) -> Intent:
        metadata = {**request.metadata, "description": request.description[:500]}
        try:
            customer_params: dict[str, Any] = {
                "description": request.description[:350],
                "metadata": metadata,
            }
            if request.customer_email:
                customer_params["email"] = request.customer_email
            customer = await self._client.v1.customers.create_async(
                params=customer_params,  # type: ignore[arg-type]
                options={"idempotency_key": f"{request.idempotency_key}:customer"},
            )
            params: stripe.params.PaymentIntentCreateParams = {
                "amount": request.amount_cents,
                "currency": request.currency,
                "capture_method": "manual",
                "customer": customer.id,
                "metadata": metadata,
            }
            if self._cards_only:
                params["allowed_payment_method_types"] = ["card"]
            obj = await self._client.v1.payment_intents.create_async(
                params=params,
                options={"idempotency_key": f"{request.idempotency_key}:intent"},
            )
        except stripe.InvalidRequestError as err:
            raise PaymentRejectedError(err.user_message or str(err)) from None
        return _intent(obj)

    async def retrieve(self, intent_id: str) -> Intent:
        try:
            return _intent(await self._client.v1.payment_intents.retrieve_async(intent_id))
        except stripe.InvalidRequestError as err:
            raise PaymentRejectedError(err.user_message or str(err)) from None

    async def authorize(
        self, intent_id: str, payment_method: str | None, idempotency_key: str
    ) -> Intent:
        current = await self.retrieve(intent_id)
        if current.status in (IntentStatus.AUTHORIZED, IntentStatus.CAPTURED):
            return current  # a retry after the confirm went through
        if current.status is IntentStatus.CANCELLED:
            raise PaymentRejectedError(f"the payment intent {intent_id} was cancelled")
        if payment_method is None:
            raise PaymentDeclinedError(
                "payment_method_required", "a payment method is needed for this charge"
            )
        try:
            # Set first, then confirm without parameters: what both Stripe and localstripe
            # accept (localstripe does not take a payment method on confirm).
            await self._client.v1.payment_intents.update_async(
                intent_id, params={"payment_method": payment_method}
            )
            obj = await self._client.v1.payment_intents.confirm_async(
                intent_id, options={"idempotency_key": f"{idempotency_key}:confirm"}
            )
        except stripe.CardError as err:
            raise _declined(err) from None
        except stripe.InvalidRequestError as err:
            raise PaymentRejectedError(err.user_message or str(err)) from None
        intent = _intent(obj)
        if intent.status is IntentStatus.REQUIRES_ACTION:
            # A server-side upgrade cannot run 3-D Secure: the customer's bank wants it,
            # so this card cannot be charged here.
            raise PaymentDeclinedError(
                "authentication_required", "the card needs the customer to authenticate"
            )
        if intent.status is IntentStatus.CREATED:
            error = obj.last_payment_error
            raise PaymentDeclinedError(
                (error.decline_code or error.code or "card_declined") if error else "declined",
                (error.message or "the card was declined") if error else "the card was declined",
            )
        return intent

    async def capture(self, intent_id: str, idempotency_key: str) -> Intent:
        current = await self.retrieve(intent_id)
        if current.status is IntentStatus.CAPTURED:
            return current
        if current.status is not IntentStatus.AUTHORIZED:
            raise PaymentRejectedError(
                f"cannot capture the payment intent {intent_id}: it is {current.status.value}"
            )
        try:
            obj = await self._client.v1.payment_intents.capture_async(
                intent_id, options={"idempotency_key": f"{idempotency_key}:capture"}
            )
        except stripe.InvalidRequestError as err:
            raise PaymentRejectedError(err.user_message or str(err)) from None
        return _intent(obj)

    async def cancel(self, intent_id: str, idempotency_key: str) -> Intent:
        current = await self.retrieve(intent_id)
        if current.status in (
            IntentStatus.CANCELLED,
            IntentStatus.CAPTURED,
            IntentStatus.PROCESSING,
        ):
            return current
        try:
            obj = await self._client.v1.payment_intents.cancel_async(
                intent_id, options={"idempotency_key": f"{idempotency_key}:cancel"}
            )
        except stripe.InvalidRequestError as err:
            raise PaymentRejectedError(err.user_message or str(err)) from None
        return _intent(obj)

    async def refund(self, intent_id: str, idempotency_key: str) -> Refund:
        try:
            existing = await self._client.v1.refunds.list_async(
                params={"payment_intent": intent_id, "limit": 10}
            )
            for found in existing.data:
                status = _REFUND_STATUS.get(str(found.status))
                if status is not None:
                    return Refund(found.id, status, int(found.amount))
            obj = await self._client.v1.refunds.create_async(
                params={"payment_intent": intent_id},
                options={"idempotency_key": f"{idempotency_key}:refund"},
            )
        except stripe.InvalidRequestError as err:
            raise PaymentRejectedError(err.user_message or str(err)) from None
        return Refund(
            obj.id, _REFUND_STATUS.get(str(obj.status), RefundStatus.FAILED), int(obj.amount)
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]
