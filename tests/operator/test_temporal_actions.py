"""The operator's start on the real Temporal dev server: kopf runs a resource's timer beside its
event handlers, so two of them may start the same run; the one that loses must not fail."""

from __future__ import annotations

import uuid

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.worker import Worker

from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.settings import Settings
from adx_operator import temporal_actions
from adx_operator.naming import MEMO_GENERATION, MEMO_UID


@workflow.defn(name="operator_start_probe", sandboxed=False)
class Quick:
    @workflow.run
    async def run(self, value: str) -> str:
        return value


@pytest.mark.parametrize(
    "reuse",
    [WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY, WorkflowIDReusePolicy.REJECT_DUPLICATE],
)
async def test_a_start_that_lost_the_race_to_a_closed_run_changes_nothing(
    settings: Settings, temporal_client: Client, reuse: WorkflowIDReusePolicy
) -> None:
    queue = settings.task_queue("probe")
    workflow_id = f"probe-{uuid.uuid4().hex[:10]}"

    async def start() -> None:
        await temporal_actions.start(
            temporal_client,
            "operator_start_probe",
            "done",
            workflow_id=workflow_id,
            task_queue=queue,
            owner_tenant_id=PLATFORM_TENANT_ID,
            memo={MEMO_UID: "uid", MEMO_GENERATION: 2},
            reuse=reuse,
        )

    async with Worker(temporal_client, task_queue=queue, workflows=[Quick]):
        await start()
        handle = temporal_client.get_workflow_handle(workflow_id)
        assert await handle.result() == "done"
        first = (await handle.describe()).run_id
        # The second handler's start, after the first run completed: the policy refuses a new
        # run, and that is not an error: the run is the one wanted.
        await start()
        assert (await handle.describe()).run_id == first
