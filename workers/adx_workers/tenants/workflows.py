"""tenant_provisioning_workflow: create the tenant record and its storage, then activate it.

A first real version: each step registers its undo before it runs, and a failure or a
cancel runs the undos in reverse so nothing is left behind. The tenant issue grows it with the
database setup, the admin user, the welcome notification and monitoring.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.tenants import (
    ACTIVATE_TENANT_ACTIVITY,
    CREATE_TENANT_RECORD_ACTIVITY,
    CREATE_TENANT_STORAGE_ACTIVITY,
    DELETE_TENANT_RECORD_ACTIVITY,
    DELETE_TENANT_STORAGE_ACTIVITY,
    SLUG_TAKEN,
    TENANT_PROVISIONING_WORKFLOW,
    ActivateTenantInput,
    ActivateTenantResult,
    Tenant,
    TenantCreationRequest,
    TenantRecordInput,
    TenantRecordResult,
    TenantRef,
    TenantStatus,
    TenantStorageInput,
    TenantStorageResult,
    UndoResult,
)
from adx_workers.common.progress import ProgressTracker
from adx_workers.common.saga import Saga

Result = TypeVar("Result")

STEPS = {
    "create_tenant_record": 30,
    "create_tenant_storage": 70,
    "activate_tenant": 95,
}

# Database and storage calls take milliseconds; a call stuck for 10 s (a dead worker, a
# lock) is cut off and retried elsewhere rather than waited on.
_DB_TIMEOUT = timedelta(seconds=10)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
    non_retryable_error_types=[SLUG_TAKEN],
)
# A step that keeps failing for this long gives up, and the saga rolls back: a tenant is
# never left half-made waiting for an outage to end (the seed allows 2 minutes in all).
_STEP_DEADLINE = timedelta(minutes=5)
# Undos must finish even when the service they clean up is flaky; they retry longer.
_UNDO_TIMEOUT = timedelta(minutes=10)


def _storage_prefix(tenant_id: str) -> str:
    # The same rule as adx_core.storage.keys.tenant_prefix, which validates the id; the
    # activity re-checks it, because workflow code must not import storage code.
    return f"tenants/{tenant_id}/"


# PINNED under Worker Versioning. It is set as the deployment's default behaviour once the
# worker runs versioned: the server rejects a per-workflow behaviour from an unversioned
# worker ("versioning behavior cannot be specified without deployment options").
@workflow.defn(name=TENANT_PROVISIONING_WORKFLOW)
class TenantProvisioningWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker(STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.run
    async def run(self, request: TenantCreationRequest) -> Tenant:
        saga = Saga()
        prefix = _storage_prefix(request.tenant_id)
        ref = TenantRef(request.tenant_id)
        storage = TenantStorageInput(request.tenant_id, prefix)
        step = "create_tenant_record"
        try:
            self._progress.started(step)
            # Each undo is registered before its call: a call that timed out or was
            # cancelled may still have done its work, and every undo is a no-op when there
            # is nothing to undo.
            saga.push(step, lambda: self._undo(DELETE_TENANT_RECORD_ACTIVITY, ref))
            await self._forward(
                CREATE_TENANT_RECORD_ACTIVITY,
                TenantRecordInput(
                    tenant_id=request.tenant_id,
                    slug=request.slug,
                    display_name=request.display_name,
                    plan=request.plan,
                    storage_prefix=prefix,
                    requested_by=request.requested_by,
                ),
                TenantRecordResult,
            )
            self._progress.finished(step)

            step = "create_tenant_storage"
            self._progress.started(step)
            saga.push(step, lambda: self._undo(DELETE_TENANT_STORAGE_ACTIVITY, storage))
            result = await self._forward(
                CREATE_TENANT_STORAGE_ACTIVITY, storage, TenantStorageResult
            )
            self._progress.count("storage_prefix_created", int(result.created))
            self._progress.finished(step)

            step = "activate_tenant"
            self._progress.started(step)
            await self._forward(
                ACTIVATE_TENANT_ACTIVITY,
                ActivateTenantInput(request.tenant_id, request.requested_by),
                ActivateTenantResult,
            )
            self._progress.finished(step)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            self._progress.failed(step, _describe(err))
            # Cleanup runs even when the workflow was cancelled: the cancel hit the step
            # in flight, and the undos are new activities that are not cancelled.
            try:
                await saga.compensate(self._progress.compensating)
            except ActivityError as undo_error:
                # Reported, not raised: the operation failed (or was cancelled) because of
                # ``err``; what could not be cleaned up is in the progress log for operators.
                self._progress.compensation_failed(_describe(undo_error))
                workflow.logger.error("compensation incomplete", extra={"step": step})
            self._progress.done("rolled_back", complete=False)
            if _is_cancellation(err):
                # End as CANCELLED, not FAILED: the step saw the cancel as an ActivityError.
                raise asyncio.CancelledError from err
            raise

        self._progress.done()
        return Tenant(
            tenant_id=request.tenant_id,
            slug=request.slug,
            display_name=request.display_name,
            plan=request.plan,
            status=TenantStatus.ACTIVE,
            storage_prefix=prefix,
        )

    async def _forward(self, activity: str, arg: object, result_type: type[Result]) -> Result:
        result: Result = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=_DB_TIMEOUT,
            schedule_to_close_timeout=_STEP_DEADLINE,
            retry_policy=_RETRY,
            # A cancel waits for the step in flight to end, so its undo never races it.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if workflow.cancellation_reason() is not None:
            # The cancel arrived while the step ran and the step succeeded anyway: honour
            # the cancel now rather than carry on (the step's undo is already registered).
            raise asyncio.CancelledError
        return result

    async def _undo(self, activity: str, arg: object) -> UndoResult:
        result: UndoResult = await workflow.execute_activity(
            activity,
            arg,
            result_type=UndoResult,
            start_to_close_timeout=_DB_TIMEOUT,
            schedule_to_close_timeout=_UNDO_TIMEOUT,
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )
        return result


def _is_cancellation(err: BaseException) -> bool:
    # A cancel request may surface as the step's own cancellation or, when the step in
    # flight ended otherwise (a timeout) while the cancel waited for it, as that failure.
    return (
        workflow.cancellation_reason() is not None
        or isinstance(err, asyncio.CancelledError)
        or (isinstance(err, ActivityError) and isinstance(err.cause, CancelledError))
    )


def _describe(err: BaseException) -> str:
    if _is_cancellation(err):
        return "cancelled"
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    return str(cause) or type(cause).__name__
