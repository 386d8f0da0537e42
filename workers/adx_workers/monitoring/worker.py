"""What the tenants worker registers for monitoring.

Monitoring runs on the tenants task queue (provisioning starts it as a child there), so it
has no worker of its own. ``send_notification_activity`` is not listed: the tenants worker
registers it once for all its workflows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adx_workers.monitoring.activities import MonitoringActivities
from adx_workers.monitoring.workflows import (
    AutoUpgradingTenantMonitoringWorkflow,
    TenantMonitoringWorkflow,
)
from adx_workers.resources import WorkerResources

WORKFLOWS: list[type] = [TenantMonitoringWorkflow]


def workflows(versioned: bool) -> list[type]:
    """A versioned worker registers monitoring as AUTO_UPGRADE (see its definition)."""
    return [AutoUpgradingTenantMonitoringWorkflow] if versioned else WORKFLOWS


def activities_for(resources: WorkerResources) -> list[Callable[..., Any]]:
    return MonitoringActivities(resources.sessions, resources.stores).all()
