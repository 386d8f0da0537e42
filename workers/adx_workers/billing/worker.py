"""What the billing domain adds to the tenants worker (task queue ``tenants``).

The lead's tenants worker registers ``WORKFLOWS`` and ``activities_for(resources)``; the
payment child runs on the same task queue. ``send_notification_activity``, which the
upgrade also calls, is registered once by that worker for every tenant workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adx_core.payments import PaymentProvider, payment_provider_from_settings
from adx_workers.billing.activities import BillingActivities
from adx_workers.billing.workflows import PaymentWorkflow, TenantUpgradeWorkflow
from adx_workers.resources import WorkerResources

WORKFLOWS: list[type] = [TenantUpgradeWorkflow, PaymentWorkflow]


def activities_for(
    resources: WorkerResources, provider: PaymentProvider | None = None
) -> list[Callable[..., Any]]:
    """The billing activities; the provider comes from the settings unless given."""
    chosen = provider or payment_provider_from_settings(resources.settings)
    return BillingActivities(resources.sessions, chosen).all()
