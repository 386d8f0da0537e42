"""tenant_monitoring_workflow's contract: its input, its signals, its query and its activities.

Provisioning starts it as an abandoned child; deprovisioning and the operator signal it.
The input doubles as the state carried across continue-as-new, so every field after
``tenant_id`` has a default: a caller names only what it wants to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

TENANT_MONITORING_WORKFLOW = "tenant_monitoring_workflow"

# Signals. ``stop`` ends the workflow cleanly (deprovisioning sends it). ``set_interval``
# takes an IntervalChange; the others take nothing.
SET_INTERVAL_SIGNAL = "set_interval"
PAUSE_SIGNAL = "pause"
RESUME_SIGNAL = "resume"
STOP_SIGNAL = "stop"

STATUS_QUERY = "status"

COLLECT_TENANT_USAGE_ACTIVITY = "collect_tenant_usage_activity"
RECORD_QUOTA_ALERT_ACTIVITY = "record_quota_alert_activity"

# Raised (non-retryable) by the usage activity when the tenant is missing, failed or
# deprovisioned: there is nothing left to monitor, and the workflow ends.
TENANT_GONE = "TenantGone"

# What is measured, by the names of the quota columns (adx_core.contracts.plans.Quotas).
RESOURCES = ("storage_bytes", "files", "users", "db_rows")

# Sampling more often than every 10 s would load the database for nothing (usage changes
# slowly); less often than weekly would not be monitoring. Values outside are refused.
MIN_INTERVAL_SECONDS = 10
MAX_INTERVAL_SECONDS = 7 * 24 * 3600

DEFAULT_THRESHOLDS_PERCENT = (80, 100)
# An alert clears only when usage falls this many points below its threshold, so a value
# hovering around the threshold does not alert on every other tick.
DEFAULT_HYSTERESIS_PERCENT = 5

# Ticks per run before continuing as new. A tick without alerts writes 11 history events
# (timer started and fired, activity scheduled, started and completed, two workflow tasks of
# three events each), so 300 ticks make ~3,300 events: under the 4,096 events at which the
# server starts suggesting continue-as-new (``is_continue_as_new_suggested`` is the safety
# net for runs busy with alerts and signals), and far from the 10,240-event warning and
# 51,200-event hard limit. Replaying a run on a new worker stays cheap.
DEFAULT_MAX_TICKS_PER_RUN = 300


def monitoring_workflow_id(tenant_id: str) -> str:
    return f"tenant-monitoring-{tenant_id}"


@dataclass(frozen=True)
class AlertState:
    """One (resource, threshold) pair: whether it is raised now, and how often it was."""

    resource: str
    threshold_percent: int
    active: bool = False
    # Raises so far, across runs: numbers the alert keys, so each crossing has its own.
    crossings: int = 0


@dataclass(frozen=True)
class ResourceAmounts:
    storage_bytes: int = 0
    files: int = 0
    users: int = 0
    db_rows: int = 0


@dataclass(frozen=True)
class UsageSample:
    tenant_id: str
    usage: ResourceAmounts
    quotas: ResourceAmounts
    sampled_at: datetime


@dataclass(frozen=True)
class TenantMonitoringData:
    tenant_id: str
    interval_seconds: int = 300
    paused: bool = False
    thresholds_percent: list[int] = field(default_factory=lambda: list(DEFAULT_THRESHOLDS_PERCENT))
    hysteresis_percent: int = DEFAULT_HYSTERESIS_PERCENT
    max_ticks_per_run: int = DEFAULT_MAX_TICKS_PER_RUN
    # Carried across continue-as-new; a caller leaves them empty.
    alerts: list[AlertState] = field(default_factory=list)
    ticks: int = 0
    failed_ticks: int = 0
    runs: int = 1
    last_sample: UsageSample | None = None


@dataclass(frozen=True)
class IntervalChange:
    interval_seconds: int


@dataclass(frozen=True)
class MonitoringStatus:
    tenant_id: str
    interval_seconds: int
    paused: bool
    stopping: bool
    ticks: int
    ticks_this_run: int
    failed_ticks: int
    runs: int
    last_sample: UsageSample | None
    active_alerts: list[AlertState]
    # Set-interval signals refused since this run started (out of bounds, not an integer).
    refused_signals: int = 0


@dataclass(frozen=True)
class MonitoringResult:
    tenant_id: str
    # "stopped" (the stop signal) or "tenant_gone".
    reason: str
    ticks: int
    runs: int


@dataclass(frozen=True)
class UsageRequest:
    tenant_id: str


@dataclass(frozen=True)
class QuotaAlert:
    tenant_id: str
    # Unique per crossing: the workflow id, the chain's first run, the resource, the
    # threshold, the crossing number and the state. A retry finds its row and adds none.
    key: str
    resource: str
    threshold_percent: int
    usage: int
    quota: int
    # "raised" or "cleared".
    state: str


@dataclass(frozen=True)
class QuotaAlertResult:
    alert_id: int
    recorded: bool  # False when the key was already recorded (a retry)
    tenant_name: str
    # The tenant's administrators, to notify of a raised alert.
    admin_emails: list[str] = field(default_factory=list)
