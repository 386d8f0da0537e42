"""tenant_monitoring_workflow: sample a tenant's usage on an interval, forever, and alert once
per quota crossing.

Each tick runs the usage activity, compares the sample with the quotas and records an alert
(a row, a metric, a mail to the tenant's admins) for every threshold newly crossed, and a
'cleared' row for every one that usage fell well below again. Signals change the interval,
pause, resume and stop it; the ``status`` query shows its state. Every
``max_ticks_per_run`` ticks it continues as new, carrying its state in the input.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

from adx_core.contracts.monitoring import (
    COLLECT_TENANT_USAGE_ACTIVITY,
    DEFAULT_HYSTERESIS_PERCENT,
    DEFAULT_MAX_TICKS_PER_RUN,
    DEFAULT_THRESHOLDS_PERCENT,
    MAX_INTERVAL_SECONDS,
    MIN_INTERVAL_SECONDS,
    PAUSE_SIGNAL,
    RECORD_QUOTA_ALERT_ACTIVITY,
    RESOURCES,
    RESUME_SIGNAL,
    SET_INTERVAL_SIGNAL,
    STATUS_QUERY,
    STOP_SIGNAL,
    TENANT_GONE,
    TENANT_MONITORING_WORKFLOW,
    AlertState,
    IntervalChange,
    MonitoringResult,
    MonitoringStatus,
    QuotaAlert,
    QuotaAlertResult,
    TenantMonitoringData,
    UsageRequest,
    UsageSample,
)
from adx_core.contracts.notifications import (
    SEND_NOTIFICATION_ACTIVITY,
    NotificationRequest,
    NotificationResult,
    Template,
)

# A sample is a few counts and a directory walk: 30 s means a stuck call, cut off and
# retried. Retries back off up to a minute; after 3 minutes the tick is skipped rather than
# delaying every later one (the next tick samples afresh anyway).
_USAGE_TIMEOUT = timedelta(seconds=30)
_USAGE_DEADLINE = timedelta(minutes=3)
_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[TENANT_GONE],
)
# An alert must not be lost to a short outage: its row and mail get longer to land.
_ALERT_TIMEOUT = timedelta(seconds=30)
_ALERT_DEADLINE = timedelta(minutes=10)
# Thresholds above this are typos, not policy.
_MAX_THRESHOLD_PERCENT = 1000
_MAX_THRESHOLDS = 10
# A run longer than this would pass the server's 10,240-event history warning (~11 a tick).
_MAX_TICKS_PER_RUN = 900
# tenant_alerts.key is a VARCHAR(200).
_MAX_KEY = 200


@dataclass(frozen=True)
class _Crossing:
    alert: AlertState
    state: str  # "raised" or "cleared"
    usage: int
    quota: int


def valid_interval(value: object) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_INTERVAL_SECONDS <= value <= MAX_INTERVAL_SECONDS
    )


def _clamped_interval(value: int) -> int:
    if valid_interval(value):
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        return 300
    return min(max(value, MIN_INTERVAL_SECONDS), MAX_INTERVAL_SECONDS)


def _valid_thresholds(values: list[int]) -> list[int]:
    kept = sorted(
        {
            v
            for v in values
            if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_THRESHOLD_PERCENT
        }
    )[:_MAX_THRESHOLDS]
    return kept or list(DEFAULT_THRESHOLDS_PERCENT)


def crossings(
    alerts: list[AlertState], sample: UsageSample, hysteresis_percent: int
) -> tuple[list[AlertState], list[_Crossing]]:
    """The alerts' next states and the crossings that lead there.

    A threshold is raised when usage reaches it and cleared only when usage falls
    ``hysteresis_percent`` points below it; in between nothing changes, so a value hovering
    around a threshold alerts once. A quota of 0 means unlimited and never alerts.
    """
    updated: list[AlertState] = []
    changes: list[_Crossing] = []
    for alert in alerts:
        used = int(getattr(sample.usage, alert.resource))
        quota = int(getattr(sample.quotas, alert.resource))
        # Integer arithmetic: percent comparisons without float rounding at the edge.
        reached = quota > 0 and used * 100 >= alert.threshold_percent * quota
        fallen = quota <= 0 or used * 100 < (alert.threshold_percent - hysteresis_percent) * quota
        if not alert.active and reached:
            alert = replace(alert, active=True, crossings=alert.crossings + 1)
            changes.append(_Crossing(alert, "raised", used, quota))
        elif alert.active and fallen:
            alert = replace(alert, active=False)
            changes.append(_Crossing(alert, "cleared", used, quota))
        updated.append(alert)
    return updated, changes


def _initial_alerts(thresholds: list[int], carried: list[AlertState]) -> list[AlertState]:
    known = {(a.resource, a.threshold_percent): a for a in carried}
    return [
        known.get((resource, threshold), AlertState(resource, threshold))
        for resource in RESOURCES
        for threshold in thresholds
    ]


# AUTO_UPGRADE under Worker Versioning: a run that never ends must move to new builds, so
# any change to its command sequence goes behind ``workflow.patched("<change-id>")`` (none
# so far). The behaviour is set as the deployment's default once the worker runs versioned:
# the server rejects a per-workflow behaviour from an unversioned worker ("versioning
# behavior cannot be specified without deployment options").
@workflow.defn(name=TENANT_MONITORING_WORKFLOW)
class TenantMonitoringWorkflow:
    @workflow.init
    def __init__(self, data: TenantMonitoringData) -> None:
        self._tenant_id = data.tenant_id
        self._interval = _clamped_interval(data.interval_seconds)
        if self._interval != data.interval_seconds:
            workflow.logger.warning(
                "interval out of bounds, clamped",
                extra={"value": repr(data.interval_seconds)[:50], "used": self._interval},
            )
        self._paused = bool(data.paused)
        self._thresholds = _valid_thresholds(list(data.thresholds_percent))
        self._hysteresis = (
            data.hysteresis_percent
            if isinstance(data.hysteresis_percent, int) and 0 <= data.hysteresis_percent < 100
            else DEFAULT_HYSTERESIS_PERCENT
        )
        self._max_ticks = (
            min(data.max_ticks_per_run, _MAX_TICKS_PER_RUN)
            if data.max_ticks_per_run > 0
            else DEFAULT_MAX_TICKS_PER_RUN
        )
        self._alerts = _initial_alerts(self._thresholds, data.alerts)
        self._ticks = data.ticks
        self._failed_ticks = data.failed_ticks
        self._runs = data.runs
        self._last_sample = data.last_sample
        self._ticks_this_run = 0
        self._refused = 0
        self._stopping = False
        # Bumped by every signal: the wait between ticks ends on a change, not only on time.
        self._changes = 0
        self._next_due: datetime | None = None

    @workflow.signal(name=SET_INTERVAL_SIGNAL)
    def set_interval(self, change: IntervalChange) -> None:
        value: Any = getattr(change, "interval_seconds", None)
        if not valid_interval(value):
            # Logged and ignored: a bad signal from a script must not end monitoring.
            self._refused += 1
            workflow.logger.warning(
                "interval refused",
                extra={"value": repr(value)[:50], "min": MIN_INTERVAL_SECONDS},
            )
            return
        if self._next_due is not None:
            # The tick already waited for counts toward the new interval.
            self._next_due += timedelta(seconds=value - self._interval)
        self._interval = value
        self._changes += 1

    @workflow.signal(name=PAUSE_SIGNAL)
    def pause(self) -> None:
        self._paused = True
        self._changes += 1

    @workflow.signal(name=RESUME_SIGNAL)
    def resume(self) -> None:
        if self._paused:
            # Sample at once: the pause may have hidden a crossing.
            self._next_due = None
        self._paused = False
        self._changes += 1

    @workflow.signal(name=STOP_SIGNAL)
    def stop(self) -> None:
        self._stopping = True
        self._changes += 1

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> MonitoringStatus:
        return MonitoringStatus(
            tenant_id=self._tenant_id,
            interval_seconds=self._interval,
            paused=self._paused,
            stopping=self._stopping,
            ticks=self._ticks,
            ticks_this_run=self._ticks_this_run,
            failed_ticks=self._failed_ticks,
            runs=self._runs,
            last_sample=self._last_sample,
            active_alerts=[a for a in self._alerts if a.active],
            refused_signals=self._refused,
        )

    @workflow.run
    async def run(self, data: TenantMonitoringData) -> MonitoringResult:
        while not self._stopping:
            if self._paused:
                await self._signalled()
                # Only signals grow a paused run's history; the server says when enough.
                if workflow.info().is_continue_as_new_suggested():
                    await self._continue_as_new(data)
            elif self._next_due is None or workflow.now() >= self._next_due:
                # Before the tick, not after: the new run then samples at once, on time,
                # rather than twice in a row.
                if self._history_is_long():
                    await self._continue_as_new(data)
                started = workflow.now()
                if not await self._tick():
                    return self._result("tenant_gone")
                # From the tick's start, so a slow sample does not shift every later one.
                self._next_due = started + timedelta(seconds=self._interval)
            else:
                # A timer or a signal, whichever comes first: a pause or a stop acts now,
                # not at the end of the interval.
                await self._signalled(at_most=self._next_due - workflow.now())
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result("stopped")

    async def _signalled(self, at_most: timedelta | None = None) -> None:
        """Wait for the next signal, or until ``at_most`` has passed."""
        seen = self._changes
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._changes != seen, timeout=at_most)

    async def _continue_as_new(self, data: TenantMonitoringData) -> None:
        # Signal handlers are synchronous today, but a later async one must finish before
        # the run ends, or its work would be lost.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self._carried(data))

    def _history_is_long(self) -> bool:
        return (
            self._ticks_this_run >= self._max_ticks
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _tick(self) -> bool:
        """One sample and its alerts; ``False`` when the tenant is gone."""
        self._ticks += 1
        self._ticks_this_run += 1
        try:
            sample: UsageSample = await workflow.execute_activity(
                COLLECT_TENANT_USAGE_ACTIVITY,
                UsageRequest(self._tenant_id),
                result_type=UsageSample,
                start_to_close_timeout=_USAGE_TIMEOUT,
                schedule_to_close_timeout=_USAGE_DEADLINE,
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            if _error_type(err) == TENANT_GONE:
                workflow.logger.info("tenant gone, monitoring ends")
                return False
            # Skipped, not fatal: the next tick samples again.
            self._failed_ticks += 1
            workflow.logger.warning("usage sample failed, tick skipped", extra={"error": str(err)})
            return True
        self._last_sample = sample
        self._alerts, changes = crossings(self._alerts, sample, self._hysteresis)
        for change in changes:
            await self._alert(change)
        return True

    async def _alert(self, change: _Crossing) -> None:
        info = workflow.info()
        # The first run's id tells this chain from an earlier one under the same workflow id
        # (a tenant whose monitoring was stopped and started again counts crossings afresh).
        chain = info.first_execution_run_id or info.run_id
        alert = change.alert
        key = (
            f"{info.workflow_id}/{chain}/{alert.resource}/{alert.threshold_percent}"
            f"/{alert.crossings}/{change.state}"
        )
        if len(key) > _MAX_KEY:
            # Only a hand-started workflow with a very long id gets here; same key, shorter.
            key = f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"
        try:
            recorded: QuotaAlertResult = await workflow.execute_activity(
                RECORD_QUOTA_ALERT_ACTIVITY,
                QuotaAlert(
                    tenant_id=self._tenant_id,
                    key=key,
                    resource=alert.resource,
                    threshold_percent=alert.threshold_percent,
                    usage=change.usage,
                    quota=change.quota,
                    state=change.state,
                ),
                result_type=QuotaAlertResult,
                start_to_close_timeout=_ALERT_TIMEOUT,
                schedule_to_close_timeout=_ALERT_DEADLINE,
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            # The crossing stays counted: alerting again on the next tick would be a
            # second alert for the same crossing.
            workflow.logger.error("quota alert not recorded", extra={"error": str(err)})
            return
        if change.state != "raised":
            return
        percent = change.usage * 100 // change.quota
        for email in recorded.admin_emails:
            await self._notify(recorded, change, email, percent)

    async def _notify(
        self, recorded: QuotaAlertResult, change: _Crossing, email: str, percent: int
    ) -> None:
        # One mail per alert and admin, whatever the retries: the key names both.
        recipient = hashlib.sha256(email.encode()).hexdigest()[:16]
        try:
            await workflow.execute_activity(
                SEND_NOTIFICATION_ACTIVITY,
                NotificationRequest(
                    key=f"quota-alert/{recorded.alert_id}/{recipient}",
                    tenant_id=self._tenant_id,
                    to=email,
                    template=Template.QUOTA_ALERT,
                    params={
                        "tenant_name": recorded.tenant_name,
                        "resource": change.alert.resource,
                        "usage": str(change.usage),
                        "quota": str(change.quota),
                        "percent": str(percent),
                        "threshold": str(change.alert.threshold_percent),
                    },
                ),
                result_type=NotificationResult,
                start_to_close_timeout=_ALERT_TIMEOUT,
                schedule_to_close_timeout=_ALERT_DEADLINE,
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(minutes=1),
                    non_retryable_error_types=["NotificationRejected"],
                ),
            )
        except ActivityError as err:
            # The alert row and the metric stand; one admin's refused mail ends nothing.
            workflow.logger.warning("quota alert mail not sent", extra={"error": str(err)})

    def _carried(self, data: TenantMonitoringData) -> TenantMonitoringData:
        return replace(
            data,
            interval_seconds=self._interval,
            paused=self._paused,
            thresholds_percent=list(self._thresholds),
            hysteresis_percent=self._hysteresis,
            max_ticks_per_run=self._max_ticks,
            alerts=list(self._alerts),
            ticks=self._ticks,
            failed_ticks=self._failed_ticks,
            runs=self._runs + 1,
            last_sample=self._last_sample,
        )

    def _result(self, reason: str) -> MonitoringResult:
        return MonitoringResult(
            tenant_id=self._tenant_id, reason=reason, ticks=self._ticks, runs=self._runs
        )


def _error_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


__all__ = ["TenantMonitoringWorkflow", "crossings", "valid_interval"]


# The same workflow for a versioned worker, where it declares AUTO_UPGRADE: it runs for the
# tenant's whole life and moves to each new current version at its next task (its changes
# go behind workflow.patched), while the short workflows stay pinned to the version that
# started them. An unversioned worker may not declare a behaviour at all (the server
# refuses the task), hence two definitions of one workflow type.
@workflow.defn(name=TENANT_MONITORING_WORKFLOW, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoUpgradingTenantMonitoringWorkflow(TenantMonitoringWorkflow):
    @workflow.init
    def __init__(self, data: TenantMonitoringData) -> None:
        super().__init__(data)

    @workflow.run
    async def run(self, data: TenantMonitoringData) -> MonitoringResult:
        return await super().run(data)
