"""tenant_monitoring_workflow's contract: its input, its signals and its id.

Provisioning starts it as an abandoned child; deprovisioning and the operator signal it.
"""

from __future__ import annotations

from dataclasses import dataclass

TENANT_MONITORING_WORKFLOW = "tenant_monitoring_workflow"

# Signals. ``stop`` ends the workflow cleanly (deprovisioning sends it).
SET_INTERVAL_SIGNAL = "set_interval"
PAUSE_SIGNAL = "pause"
RESUME_SIGNAL = "resume"
STOP_SIGNAL = "stop"


def monitoring_workflow_id(tenant_id: str) -> str:
    return f"tenant-monitoring-{tenant_id}"


@dataclass(frozen=True)
class TenantMonitoringData:
    tenant_id: str
    interval_seconds: int = 300
    paused: bool = False
