"""A short monitoring run whose histories must replay against today's workflow code.

Two runs of one execution: the first raises an alert and continues as new, the second
takes set_interval, pause, resume and stop. Both are replayed here on every test run; with
``ADX_RECORD_HISTORIES=1`` they are also written to tests/replay/histories/, which
tests/replay/test_replay.py replays in CI.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.common import HeaderCodecBehavior
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Interceptor as WorkerInterceptor
from temporalio.worker import Replayer

from adx_core.contracts.monitoring import (
    PAUSE_SIGNAL,
    RESUME_SIGNAL,
    SET_INTERVAL_SIGNAL,
    STOP_SIGNAL,
    TENANT_MONITORING_WORKFLOW,
    IntervalChange,
    MonitoringResult,
    TenantMonitoringData,
    monitoring_workflow_id,
)
from adx_core.settings import Settings
from adx_core.temporal.client import data_converter, interceptors
from adx_workers.monitoring.worker import WORKFLOWS
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from tests.integration.monitoring.conftest import WatchedTenant, monitoring_worker
from tests.integration.monitoring.scripted import ScriptedUsage

HISTORIES = Path(__file__).parents[2] / "replay" / "histories"


async def test_monitoring_histories_replay(
    time_skipping: WorkflowEnvironment,
    settings: Settings,
    resources: WorkerResources,
    watched_tenant: WatchedTenant,
) -> None:
    usage = ScriptedUsage(percent=lambda call: 50 if call == 0 else 85)
    task_queue = settings.task_queue("tenants")
    client = time_skipping.client
    async with monitoring_worker(client, resources, task_queue, [usage.collect]):
        handle = await client.start_workflow(
            TENANT_MONITORING_WORKFLOW,
            TenantMonitoringData(
                watched_tenant.tenant_id, interval_seconds=3600, max_ticks_per_run=3
            ),
            id=monitoring_workflow_id(watched_tenant.tenant_id),
            task_queue=task_queue,
            result_type=MonitoringResult,
        )
        await time_skipping.sleep(timedelta(hours=3, minutes=30))
        # Longer, not shorter: a shorter interval would make a tick due at once, and whether
        # it runs before the pause lands would depend on how the worker batches the signals.
        await handle.signal(SET_INTERVAL_SIGNAL, IntervalChange(7200))
        await handle.signal(PAUSE_SIGNAL)
        await time_skipping.sleep(timedelta(hours=2))
        await handle.signal(RESUME_SIGNAL)
        await time_skipping.sleep(timedelta(hours=1))
        await handle.signal(STOP_SIGNAL)
        result = await handle.result()
    assert result.reason == "stopped"
    assert result.runs == 2

    first = await client.get_workflow_handle(
        handle.id, run_id=handle.first_execution_run_id
    ).fetch_history()
    last = await client.get_workflow_handle(handle.id).fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert last.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED

    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        data_converter=data_converter(settings),
        # The client's interceptors are the worker's too (they implement both sides).
        interceptors=[i for i in interceptors() if isinstance(i, WorkerInterceptor)],
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )
    cases = {"continued_as_new": first, "stopped": last}
    for history in cases.values():
        await replayer.replay_workflow(history)

    if os.environ.get("ADX_RECORD_HISTORIES") == "1":
        for case, history in cases.items():
            path = HISTORIES / f"{TENANT_MONITORING_WORKFLOW}--{case}.json"
            await asyncio.to_thread(path.write_text, history.to_json())
            # What is written must read back as it will in CI.
            loaded = WorkflowHistory.from_json(path.stem, path.read_text())
            await replayer.replay_workflow(loaded)
