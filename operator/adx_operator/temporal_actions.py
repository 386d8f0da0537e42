"""The side of the operator that acts on Temporal: start, signal, query and cancel.

Every start names an id derived from the resource and joins a run already there
(``USE_EXISTING``), so a repeated event or a restart of the operator never starts a
second one. The memo says which resource and generation asked, which is how a failed
attempt is told apart from a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from adx_core.contracts import search
from adx_core.contracts.monitoring import STATUS_QUERY, MonitoringStatus, monitoring_workflow_id
from adx_operator.naming import ACTOR, MEMO_GENERATION, MEMO_RESOURCE, MEMO_SPEC, MEMO_UID


def memo_for(
    uid: str,
    generation: int,
    resource: str,
    subject_tenant_id: str,
    requested: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        **({MEMO_SPEC: requested} if requested is not None else {}),
        MEMO_UID: uid,
        MEMO_GENERATION: generation,
        MEMO_RESOURCE: resource,
        # The keys the API's operations read for any operation.
        "subject_tenant_id": subject_tenant_id,
        "requested_by": ACTOR,
    }


async def start(
    client: Client,
    workflow: str,
    arg: object,
    *,
    workflow_id: str,
    task_queue: str,
    owner_tenant_id: str,
    memo: dict[str, Any],
    reuse: WorkflowIDReusePolicy,
) -> None:
    # Another handler of the same resource (kopf runs the timer beside the event handlers)
    # may have started this run first, and it may have closed already, so the reuse policy
    # refuses a second one. That is the run wanted: the next look finds it.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            # Listed among the owner's operations, found by the resource's correlation id.
            search_attributes=search.start_attributes(
                owner_tenant_id, f"k8s-{memo[MEMO_UID]}-{memo[MEMO_GENERATION]}"
            ),
            memo=memo,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=reuse,
        )


async def monitoring_paused(client: Client, tenant_id: str, within: float) -> bool | None:
    """Whether the tenant's monitoring workflow says it is paused; ``None`` when it does
    not answer in time (no worker) or does not exist (stopped)."""
    handle = client.get_workflow_handle(monitoring_workflow_id(tenant_id))
    try:
        status = await asyncio.wait_for(
            handle.query(STATUS_QUERY, result_type=MonitoringStatus), within
        )
    except (TimeoutError, RPCError, WorkflowQueryFailedError):
        return None
    return bool(status.paused)


async def signal_monitoring(client: Client, tenant_id: str, signal: str) -> bool:
    """Send ``signal`` (pause or resume); ``False`` when the workflow is not running."""
    handle = client.get_workflow_handle(monitoring_workflow_id(tenant_id))
    try:
        await handle.signal(signal)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def wait_for_close(client: Client, workflow_id: str, run_id: str, within: float) -> bool:
    """Return when the run closes (however it ends; ``True``) or after ``within`` seconds
    (``False``): a resource whose workflow is in flight then shows the end at once, not up
    to a poll interval later."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        await asyncio.wait_for(handle.result(follow_runs=False), within)
    except WorkflowFailureError:
        return True
    except (TimeoutError, RPCError):
        return False
    return True


async def cancel(client: Client, workflow_id: str, run_id: str | None) -> None:
    """Ask the run to cancel (its saga rolls back); a run already gone is fine."""
    try:
        await client.get_workflow_handle(workflow_id, run_id=run_id).cancel()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
