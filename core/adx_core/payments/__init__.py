"""Payment providers: Stripe (the official SDK's async client) and a manual provider."""

from __future__ import annotations

from adx_core.payments.base import (
    Intent,
    IntentRequest,
    IntentStatus,
    PaymentDeclinedError,
    PaymentProvider,
    PaymentRejectedError,
    Refund,
    RefundStatus,
)
from adx_core.payments.manual import DECLINING_METHOD, ManualProvider
from adx_core.settings import PaymentProvider as ProviderName
from adx_core.settings import Settings

__all__ = [
    "DECLINING_METHOD",
    "Intent",
    "IntentRequest",
    "IntentStatus",
    "ManualProvider",
    "PaymentDeclinedError",
    "PaymentProvider",
    "PaymentRejectedError",
    "Refund",
    "RefundStatus",
    "payment_provider_from_settings",
]


def payment_provider_from_settings(settings: Settings) -> PaymentProvider:
    if settings.payment_provider is ProviderName.STRIPE:
        # Imported here: the SDK is large, and the manual provider does not need it.
        from adx_core.payments.stripe_provider import StripeProvider

        if settings.stripe_api_key is None:  # settings validation already refuses this
            raise ValueError("ADX_PAYMENT_PROVIDER=stripe needs ADX_STRIPE_API_KEY")
        return StripeProvider(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    return ManualProvider()
