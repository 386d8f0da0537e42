"""tenant_monitoring_workflow over simulated weeks, under the time-skipping test server.

The usage activity is a fake that plays a script (scripted.py); the alert activity, the
notification activity, PostgreSQL and the SMTP server are real.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from adx_core.contracts.monitoring import (
    PAUSE_SIGNAL,
    RESUME_SIGNAL,
    SET_INTERVAL_SIGNAL,
    STATUS_QUERY,
    STOP_SIGNAL,
    TENANT_MONITORING_WORKFLOW,
    IntervalChange,
    MonitoringResult,
    MonitoringStatus,
    TenantMonitoringData,
    monitoring_workflow_id,
)
from adx_core.settings import Settings
from adx_workers.resources import WorkerResources
from tests.integration.monitoring.conftest import WatchedTenant, monitoring_worker
from tests.integration.monitoring.scripted import (
    EXPECTED_ALERTS,
    ScriptedUsage,
    tenant_gone_after,
)
from tests.support.mail import Mailbox

HOUR = 3600


async def eventually(check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def status_of(handle: WorkflowHandle[Any, Any]) -> MonitoringStatus:
    status: MonitoringStatus = await handle.query(STATUS_QUERY, result_type=MonitoringStatus)
    return status


async def status_when(
    handle: WorkflowHandle[Any, Any], check: Callable[[MonitoringStatus], bool]
) -> MonitoringStatus:
    """The status once ``check`` holds: a query may be answered before the worker has
    applied the signals sent just before it."""
    deadline = time.monotonic() + 20.0
    while True:
        status = await status_of(handle)
        if check(status):
            return status
        assert time.monotonic() < deadline, f"status never matched: {status}"
        await asyncio.sleep(0.05)


async def start(
    env: WorkflowEnvironment, task_queue: str, data: TenantMonitoringData
) -> WorkflowHandle[Any, MonitoringResult]:
    return await env.client.start_workflow(
        TENANT_MONITORING_WORKFLOW,
        data,
        id=monitoring_workflow_id(data.tenant_id),
        task_queue=task_queue,
        result_type=MonitoringResult,
    )


async def alert_rows(owner_engine: AsyncEngine, tenant_id: str) -> list[tuple[str, int, str]]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT resource, threshold_percent, state FROM tenant_alerts "
                "WHERE tenant_id = CAST(:t AS uuid) ORDER BY id"
            ),
            {"t": tenant_id},
        )
        return [(r[0], int(r[1]), r[2]) for r in rows]


async def test_thirty_days_alert_once_per_crossing_pause_and_stop(
    time_skipping: WorkflowEnvironment,
    settings: Settings,
    resources: WorkerResources,
    watched_tenant: WatchedTenant,
    owner_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    usage = ScriptedUsage()
    task_queue = settings.task_queue("tenants")
    async with monitoring_worker(time_skipping.client, resources, task_queue, [usage.collect]):
        handle = await start(
            time_skipping,
            task_queue,
            # 200 ticks a run: ~650 hourly ticks in 30 days continue as new three times.
            TenantMonitoringData(
                tenant_id=watched_tenant.tenant_id, interval_seconds=HOUR, max_ticks_per_run=200
            ),
        )
        first_run = handle.first_execution_run_id
        await time_skipping.sleep(timedelta(days=10))

        await handle.signal(PAUSE_SIGNAL)
        # Let a tick that was in flight when the pause came finish.
        await time_skipping.sleep(timedelta(minutes=1))
        await status_when(handle, lambda s: s.paused)
        calls_at_pause = usage.calls
        await time_skipping.sleep(timedelta(days=3))
        assert usage.calls == calls_at_pause, "a paused workflow sampled"

        await handle.signal(RESUME_SIGNAL)
        # Resuming samples at once, not an interval later.
        await time_skipping.sleep(timedelta(minutes=1))
        await eventually(lambda: usage.calls == calls_at_pause + 1)

        await time_skipping.sleep(timedelta(days=17))
        status = await status_of(handle)
        assert not status.paused
        assert status.ticks == usage.calls
        await handle.signal(STOP_SIGNAL)
        result = await handle.result()

    assert result.reason == "stopped"
    # 30 days of hourly ticks, less the 3 paused days (give or take the edge ticks).
    assert 27 * 24 - 2 <= result.ticks <= 27 * 24 + 3
    assert result.ticks == usage.calls
    assert result.runs >= 3
    description = await handle.describe()
    assert description.run_id != first_run
    assert description.status == WorkflowExecutionStatus.COMPLETED
    first = await time_skipping.client.get_workflow_handle(
        handle.id, run_id=first_run
    ).fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    # ~11 events a tick, as contracts/monitoring.py reckons when it bounds a run at 300.
    assert 200 * 11 <= len(first.events) <= 200 * 11 + 50

    # One row per crossing, and one mail per raised alert, however long usage stayed high.
    assert await alert_rows(owner_engine, watched_tenant.tenant_id) == EXPECTED_ALERTS
    mails = mailbox.to(watched_tenant.admin_email)
    assert len(mails) == 3
    assert [m["Subject"] for m in mails] == [
        "Watched Inc: storage_bytes at 81% of its quota",
        "Watched Inc: storage_bytes at 90% of its quota",
        "Watched Inc: storage_bytes at 100% of its quota",
    ]


async def test_bad_intervals_are_refused_and_monitoring_goes_on(
    time_skipping: WorkflowEnvironment,
    settings: Settings,
    resources: WorkerResources,
) -> None:
    usage = ScriptedUsage(percent=lambda call: 10)
    task_queue = settings.task_queue("tenants")
    tenant_id = str(uuid.uuid4())
    async with monitoring_worker(time_skipping.client, resources, task_queue, [usage.collect]):
        handle = await start(
            time_skipping, task_queue, TenantMonitoringData(tenant_id, interval_seconds=HOUR)
        )
        refused = [0, -5, 10**12, 7 * 24 * HOUR + 1, 9]
        for value in refused:
            await handle.signal(SET_INTERVAL_SIGNAL, IntervalChange(value))
        # Payloads of the wrong shape: a bool, a float, a string, a bare number, a list.
        # The SDK drops what it cannot decode into IntervalChange; the handler refuses the rest.
        hostile: list[object] = [
            {"interval_seconds": True},
            {"interval_seconds": 1.5},
            {"interval_seconds": "600"},
            "600",
            600,
            [600],
            {"interval_seconds": None},
        ]
        for payload in hostile:
            await handle.signal(SET_INTERVAL_SIGNAL, payload)
        # Signals apply in order: once this pause shows, every one before it was handled.
        await handle.signal(PAUSE_SIGNAL)
        status = await status_when(handle, lambda s: s.paused)
        assert status.refused_signals >= len(refused)
        assert status.interval_seconds == HOUR
        await handle.signal(RESUME_SIGNAL)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING

        # A valid change takes effect, measured from the last tick.
        await handle.signal(SET_INTERVAL_SIGNAL, IntervalChange(600))
        await status_when(handle, lambda s: s.interval_seconds == 600)
        calls = usage.calls
        await time_skipping.sleep(timedelta(minutes=61))
        await eventually(lambda: usage.calls >= calls + 6)
        assert usage.calls <= calls + 7

        await handle.signal(STOP_SIGNAL)
        result = await handle.result()
    assert result.reason == "stopped"


async def test_out_of_bounds_input_is_clamped(
    time_skipping: WorkflowEnvironment,
    settings: Settings,
    resources: WorkerResources,
) -> None:
    usage = ScriptedUsage(percent=lambda call: 10)
    task_queue = settings.task_queue("tenants")
    async with monitoring_worker(time_skipping.client, resources, task_queue, [usage.collect]):
        handle = await start(
            time_skipping,
            task_queue,
            TenantMonitoringData(
                str(uuid.uuid4()),
                interval_seconds=0,
                thresholds_percent=[-1, 0, 5000],
                hysteresis_percent=-3,
                max_ticks_per_run=-1,
            ),
        )
        status = await status_of(handle)
        assert status.interval_seconds == 10
        await handle.signal(STOP_SIGNAL)
        assert (await handle.result()).reason == "stopped"


async def test_tenant_gone_ends_the_workflow(
    time_skipping: WorkflowEnvironment,
    settings: Settings,
    resources: WorkerResources,
) -> None:
    usage = ScriptedUsage(percent=lambda call: 10, fail=tenant_gone_after(3))
    task_queue = settings.task_queue("tenants")
    async with monitoring_worker(time_skipping.client, resources, task_queue, [usage.collect]):
        handle = await start(
            time_skipping, task_queue, TenantMonitoringData(str(uuid.uuid4()), HOUR)
        )
        result = await handle.result()
    assert result.reason == "tenant_gone"
    assert result.ticks == 4
    # Not retried: the tenant will not come back.
    assert usage.attempts == 4


async def test_a_failing_sample_skips_the_tick_and_monitoring_goes_on(
    time_skipping: WorkflowEnvironment,
    settings: Settings,
    resources: WorkerResources,
) -> None:
    # The second sample keeps failing until its 3-minute deadline; the others work.
    usage = ScriptedUsage(
        percent=lambda call: 10,
        fail=lambda call: RuntimeError("database unreachable") if call == 1 else None,
    )
    task_queue = settings.task_queue("tenants")
    async with monitoring_worker(time_skipping.client, resources, task_queue, [usage.collect]):
        handle = await start(
            time_skipping, task_queue, TenantMonitoringData(str(uuid.uuid4()), HOUR)
        )
        # The tick at 1 h retries with backoff until its deadline, 3 minutes later.
        await time_skipping.sleep(timedelta(minutes=90))
        assert usage.attempts > 3
        await status_when(handle, lambda s: s.failed_ticks == 1)
        # Let the script past its failing call; the tick at 2 h samples again.
        usage.calls = 2
        await time_skipping.sleep(timedelta(hours=1))
        await eventually(lambda: usage.calls >= 3)
        status = await status_of(handle)
        assert status.failed_ticks == 1
        assert status.ticks == 3
        assert status.last_sample is not None
        await handle.signal(STOP_SIGNAL)
        assert (await handle.result()).reason == "stopped"
