"""tenant_deprovisioning_workflow: provisioning in reverse.

suspend → stop monitoring → (export) → remove storage → notify → remove rows → record.

It has no compensation: removing is the goal, and each step is safe to repeat. A run that
fails part-way leaves the tenant suspended, and running it again finishes the job; a run
for a tenant already removed ends at once with ``already_deprovisioned``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from adx_core.contracts.monitoring import STOP_SIGNAL, monitoring_workflow_id
from adx_core.contracts.notifications import (
    NOTIFICATION_REJECTED,
    SEND_NOTIFICATION_ACTIVITY,
    NotificationRequest,
    NotificationResult,
    Template,
)
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.tenants import (
    EXPORT_TENANT_ACTIVITY,
    FINISH_DEPROVISIONING_ACTIVITY,
    LOAD_TENANT_ACTIVITY,
    REMOVE_TENANT_DATA_ACTIVITY,
    REMOVE_TENANT_STORAGE_ACTIVITY,
    SUSPEND_TENANT_ACTIVITY,
    TENANT_BUSY,
    TENANT_DEPROVISIONING_WORKFLOW,
    TENANT_NOT_FOUND,
    DeprovisioningSummary,
    ExportResult,
    RemoveDataResult,
    RemoveStorageResult,
    StatusResult,
    TenantDeprovisioningRequest,
    TenantDeprovisioningResult,
    TenantRef,
    TenantSnapshot,
    TenantStatus,
)
from adx_workers.common.progress import ProgressTracker

Result = TypeVar("Result")

STEPS = {
    "load_tenant": 5,
    "suspend_tenant": 15,
    "stop_monitoring": 25,
    "export_tenant": 50,
    "remove_storage": 70,
    "notify_admins": 75,
    "remove_rows": 90,
    "record_removal": 100,
}

_STEP_TIMEOUT = timedelta(seconds=30)
# Removal must finish eventually; it keeps retrying through outages for this long before
# the operation fails (and can be started again).
_STEP_DEADLINE = timedelta(minutes=30)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[TENANT_NOT_FOUND, NOTIFICATION_REJECTED],
)


# PINNED under Worker Versioning, like provisioning (see workflows.py).
@workflow.defn(name=TENANT_DEPROVISIONING_WORKFLOW)
class TenantDeprovisioningWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker(STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.run
    async def run(self, request: TenantDeprovisioningRequest) -> TenantDeprovisioningResult:
        ref = TenantRef(request.tenant_id)
        tenant = await self._step("load_tenant", LOAD_TENANT_ACTIVITY, ref, TenantSnapshot)
        if tenant.status is TenantStatus.DEPROVISIONED:
            self._progress.done()
            return TenantDeprovisioningResult(request.tenant_id, already_deprovisioned=True)
        if tenant.status is TenantStatus.PROVISIONING:
            raise ApplicationError(
                "the tenant is still being provisioned; cancel that operation first",
                type=TENANT_BUSY,
                non_retryable=True,
            )

        await self._step("suspend_tenant", SUSPEND_TENANT_ACTIVITY, ref, StatusResult)

        self._progress.started("stop_monitoring")
        await self._stop_monitoring(monitoring_workflow_id(request.tenant_id))
        self._progress.finished("stop_monitoring")

        export: ExportResult | None = None
        if request.export:
            export = await self._step("export_tenant", EXPORT_TENANT_ACTIVITY, ref, ExportResult)
            self._progress.count("objects_exported", export.objects)

        storage = await self._step(
            "remove_storage", REMOVE_TENANT_STORAGE_ACTIVITY, ref, RemoveStorageResult
        )
        self._progress.count("objects_removed", storage.objects_removed)
        self._progress.started("notify_admins")
        await self._notify_admins(tenant)
        self._progress.finished("notify_admins")

        rows = await self._step("remove_rows", REMOVE_TENANT_DATA_ACTIVITY, ref, RemoveDataResult)
        self._progress.count("rows_removed", rows.rows_removed)

        await self._step(
            "record_removal",
            FINISH_DEPROVISIONING_ACTIVITY,
            DeprovisioningSummary(
                tenant_id=request.tenant_id,
                requested_by=request.requested_by,
                objects_removed=storage.objects_removed,
                rows_removed=rows.rows_removed,
                export_key=export.key if export else None,
            ),
            StatusResult,
        )
        self._progress.done()
        return TenantDeprovisioningResult(
            tenant_id=request.tenant_id,
            already_deprovisioned=False,
            objects_removed=storage.objects_removed,
            rows_removed=rows.rows_removed,
            export_key=export.key if export else None,
        )

    async def _step(
        self, step: str, activity: str, arg: object, result_type: type[Result]
    ) -> Result:
        self._progress.started(step)
        try:
            result: Result = await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=_STEP_TIMEOUT,
                schedule_to_close_timeout=_STEP_DEADLINE,
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            self._progress.failed(step, str(err.cause or err))
            raise
        self._progress.finished(step)
        return result

    async def _stop_monitoring(self, monitoring_id: str) -> None:
        try:
            await workflow.get_external_workflow_handle(monitoring_id).signal(STOP_SIGNAL)
        except ApplicationError:
            # Already ended, or the tenant never got that far: nothing to stop.
            workflow.logger.info("monitoring was not running", extra={"id": monitoring_id})

    async def _notify_admins(self, tenant: TenantSnapshot) -> None:
        for email in tenant.admin_emails:
            try:
                await workflow.execute_activity(
                    SEND_NOTIFICATION_ACTIVITY,
                    NotificationRequest(
                        key=f"deprovisioned-{tenant.tenant_id}-{email}",
                        tenant_id=tenant.tenant_id,
                        to=email,
                        template=Template.TENANT_DEPROVISIONED,
                        params={"tenant_name": tenant.display_name, "tenant_slug": tenant.slug},
                    ),
                    result_type=NotificationResult,
                    start_to_close_timeout=_STEP_TIMEOUT,
                    schedule_to_close_timeout=timedelta(minutes=5),
                    retry_policy=_RETRY,
                )
            except ActivityError as err:
                # A courtesy: an address that bounces must not keep the tenant half-removed.
                self._progress.failed("notify_admins", str(err.cause or err))
