"""tenant_provisioning_workflow: everything a new tenant needs, or nothing.

validate → record → (database ∥ storage) → admin user → welcome → monitoring → activate.
Each step registers its undo before it runs; a failure or a cancel runs the undos in
reverse. The tenant then stays on record as ``failed`` with the step and the cause, and
everything else it had is gone.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

from adx_core.contracts.monitoring import (
    STOP_SIGNAL,
    TENANT_MONITORING_WORKFLOW,
    TenantMonitoringData,
    monitoring_workflow_id,
)
from adx_core.contracts.notifications import (
    NOTIFICATION_REJECTED,
    SEND_NOTIFICATION_ACTIVITY,
    NotificationRequest,
    NotificationResult,
    Template,
)
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.tenants import (
    ACTIVATE_TENANT_ACTIVITY,
    CREATE_ADMIN_USER_ACTIVITY,
    CREATE_TENANT_RECORD_ACTIVITY,
    CREATE_TENANT_STORAGE_ACTIVITY,
    DELETE_TENANT_STORAGE_ACTIVITY,
    INVALID_TENANT_REQUEST,
    MARK_TENANT_FAILED_ACTIVITY,
    REMOVE_ADMIN_USER_ACTIVITY,
    SETUP_TENANT_DATABASE_ACTIVITY,
    SLUG_TAKEN,
    TEARDOWN_TENANT_DATABASE_ACTIVITY,
    TENANT_PROVISIONING_WORKFLOW,
    VALIDATE_TENANT_REQUEST_ACTIVITY,
    ActivateTenantInput,
    ActivateTenantResult,
    AdminUserInput,
    AdminUserResult,
    Tenant,
    TenantCreationRequest,
    TenantDatabaseInput,
    TenantDatabaseResult,
    TenantFailure,
    TenantRecordInput,
    TenantRecordResult,
    TenantRef,
    TenantStatus,
    TenantStorageInput,
    TenantStorageResult,
    TenantValidationInput,
    TenantValidationResult,
    UndoResult,
)
from adx_workers.common.failures import describe, is_cancellation
from adx_workers.common.progress import ProgressTracker
from adx_workers.common.saga import Saga, run_undo

Result = TypeVar("Result")

STEPS = {
    "validate_request": 5,
    "create_tenant_record": 15,
    "setup_database": 35,
    "setup_storage": 45,
    "create_admin_user": 60,
    "send_welcome_notification": 75,
    "start_monitoring": 85,
    "activate_tenant": 95,
}

# Database and storage calls take milliseconds; a call stuck for 10 s (a dead worker, a
# lock) is cut off and retried elsewhere rather than waited on.
_STEP_TIMEOUT = timedelta(seconds=10)
# A mail server may be slow to answer; a notification gets longer per attempt.
_NOTIFY_TIMEOUT = timedelta(seconds=30)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
    non_retryable_error_types=[SLUG_TAKEN, INVALID_TENANT_REQUEST, NOTIFICATION_REJECTED],
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


class _StepFailedError(Exception):
    """Carries which step failed out of the parallel block."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(step)
        self.step = step
        self.error = error


# PINNED under Worker Versioning. It is set as the deployment's default behaviour once the
# worker runs versioned: the server rejects a per-workflow behaviour from an unversioned
# worker ("versioning behavior cannot be specified without deployment options").
@workflow.defn(name=TENANT_PROVISIONING_WORKFLOW)
class TenantProvisioningWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker(STEPS)
        self._failed_step = "validate_request"
        self._cause = ""

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.run
    async def run(self, request: TenantCreationRequest) -> Tenant:
        saga = Saga()
        tenant_id = request.tenant_id
        prefix = _storage_prefix(tenant_id)
        ref = TenantRef(tenant_id)
        storage = TenantStorageInput(tenant_id, prefix)
        # Generated here, so a retried activity reuses it (see AdminUserInput).
        admin = AdminUserInput(
            tenant_id=tenant_id,
            user_id=str(workflow.uuid4()),
            email=request.admin.email,
            name=request.admin.name,
            requested_by=request.requested_by,
        )
        step = "validate_request"
        failure: BaseException | None = None
        try:
            self._progress.started(step)
            await self._forward(
                VALIDATE_TENANT_REQUEST_ACTIVITY,
                TenantValidationInput(tenant_id, request.slug, request.plan, request.quotas),
                TenantValidationResult,
            )
            self._progress.finished(step)

            step = "create_tenant_record"
            self._progress.started(step)
            # Each undo is registered before its call: a call that timed out or was
            # cancelled may still have done its work, and every undo is a no-op when there
            # is nothing to undo. The record's undo reads the failure when it runs.
            saga.push(
                step,
                lambda: self._undo(
                    MARK_TENANT_FAILED_ACTIVITY,
                    TenantFailure(tenant_id, self._failed_step, self._cause, request.requested_by),
                ),
            )
            await self._forward(
                CREATE_TENANT_RECORD_ACTIVITY,
                TenantRecordInput(
                    tenant_id=tenant_id,
                    slug=request.slug,
                    display_name=request.display_name,
                    plan=request.plan,
                    storage_prefix=prefix,
                    requested_by=request.requested_by,
                ),
                TenantRecordResult,
            )
            self._progress.finished(step)

            step = "setup_database"
            saga.push(step, lambda: self._undo(TEARDOWN_TENANT_DATABASE_ACTIVITY, ref))
            saga.push("setup_storage", lambda: self._undo(DELETE_TENANT_STORAGE_ACTIVITY, storage))
            database, bucket = await self._in_parallel(
                self._step(
                    "setup_database",
                    SETUP_TENANT_DATABASE_ACTIVITY,
                    TenantDatabaseInput(tenant_id, request.plan, request.quotas),
                    TenantDatabaseResult,
                ),
                self._step(
                    "setup_storage", CREATE_TENANT_STORAGE_ACTIVITY, storage, TenantStorageResult
                ),
            )
            self._progress.count("permissions", database.permissions)
            self._progress.count("storage_prefix_created", int(bucket.created))

            step = "create_admin_user"
            self._progress.started(step)
            saga.push(step, lambda: self._undo(REMOVE_ADMIN_USER_ACTIVITY, admin))
            created = await self._forward(CREATE_ADMIN_USER_ACTIVITY, admin, AdminUserResult)
            self._progress.finished(step)

            step = "send_welcome_notification"
            self._progress.started(step)
            await self._forward(
                SEND_NOTIFICATION_ACTIVITY,
                NotificationRequest(
                    key=f"welcome-{tenant_id}",
                    tenant_id=tenant_id,
                    to=request.admin.email,
                    template=Template.WELCOME,
                    params={
                        "tenant_name": request.display_name,
                        "tenant_slug": request.slug,
                        "admin_name": request.admin.name,
                        "plan": request.plan.value,
                    },
                ),
                NotificationResult,
                attempt_timeout=_NOTIFY_TIMEOUT,
            )
            self._progress.finished(step)

            step = "start_monitoring"
            self._progress.started(step)
            monitoring_id = monitoring_workflow_id(tenant_id)
            saga.push(step, lambda: self._stop_monitoring(monitoring_id))
            # ABANDON: monitoring outlives this workflow; deprovisioning stops it.
            await workflow.start_child_workflow(
                TENANT_MONITORING_WORKFLOW,
                TenantMonitoringData(
                    tenant_id=tenant_id, interval_seconds=request.monitoring_interval_seconds
                ),
                id=monitoring_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
            self._progress.finished(step)

            step = "activate_tenant"
            self._progress.started(step)
            await self._forward(
                ACTIVATE_TENANT_ACTIVITY,
                ActivateTenantInput(tenant_id, request.requested_by),
                ActivateTenantResult,
            )
            self._progress.finished(step)
        except _StepFailedError as err:
            await self._roll_back(saga, err.step, err.error)
            failure = err.error
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            await self._roll_back(saga, step, err)
            failure = err
        if failure is not None:
            if is_cancellation(failure):
                # End as CANCELLED, not FAILED: the step saw the cancel as an ActivityError.
                raise asyncio.CancelledError from failure
            raise failure

        self._progress.done()
        return Tenant(
            tenant_id=tenant_id,
            slug=request.slug,
            display_name=request.display_name,
            plan=request.plan,
            status=TenantStatus.ACTIVE,
            storage_prefix=prefix,
            admin_user_id=created.user_id,
            monitoring_workflow_id=monitoring_id,
        )

    async def _roll_back(self, saga: Saga, step: str, err: BaseException) -> None:
        # The record's undo (mark_tenant_failed) reads these when it runs.
        self._failed_step, self._cause = step, describe(err)
        await saga.roll_back(self._progress, step, err)

    async def _in_parallel(
        self,
        database: asyncio.Future[TenantDatabaseResult],
        storage: asyncio.Future[TenantStorageResult],
    ) -> tuple[TenantDatabaseResult, TenantStorageResult]:
        # return_exceptions: both steps end before anything is undone, so an undo never
        # races the other step still in flight.
        results = await asyncio.gather(database, storage, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        db_result, storage_result = results
        assert isinstance(db_result, TenantDatabaseResult)
        assert isinstance(storage_result, TenantStorageResult)
        return db_result, storage_result

    def _step(
        self, step: str, activity: str, arg: object, result_type: type[Result]
    ) -> asyncio.Future[Result]:
        async def run() -> Result:
            self._progress.started(step)
            try:
                result = await self._forward(activity, arg, result_type)
            except (ActivityError, ApplicationError) as err:
                raise _StepFailedError(step, err) from err
            self._progress.finished(step)
            return result

        return asyncio.ensure_future(run())

    async def _forward(
        self,
        activity: str,
        arg: object,
        result_type: type[Result],
        attempt_timeout: timedelta = _STEP_TIMEOUT,
    ) -> Result:
        result: Result = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=attempt_timeout,
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
        return await run_undo(
            activity, arg, UndoResult, attempt_timeout=_STEP_TIMEOUT, deadline=_UNDO_TIMEOUT
        )

    async def _stop_monitoring(self, monitoring_id: str) -> None:
        try:
            await workflow.get_external_workflow_handle(monitoring_id).signal(STOP_SIGNAL)
        except ApplicationError:
            # Already ended (or never started): nothing to stop.
            workflow.logger.info("monitoring was not running", extra={"id": monitoring_id})
