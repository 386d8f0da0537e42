"""file_upload_workflow: a staged upload becomes a scanned, processed, readable file.

assemble (resumable uploads) → record → validate → virus_scan → promote →
(thumbnails ∥ metadata ∥ analysis, under a deadline) → persist.

Until ``promote`` the bytes sit in the tenant's quarantine, which no endpoint serves. A
file that fails validation or the scan is marked ``rejected`` with the reason (an infected
one stays in quarantine, for inspection; anything else is deleted). A failure after
promotion removes the promoted object, its thumbnails and the record. The optional steps
never fail the upload: a late or failed one is marked pending and handed to
file_processing_workflow, which runs it again on its own.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

from adx_core.contracts.files import (
    ANALYZE_CONTENT_ACTIVITY,
    ASSEMBLE_UPLOAD_ACTIVITY,
    EXTRACT_METADATA_ACTIVITY,
    FILE_INFECTED,
    FILE_PROCESSING_WORKFLOW,
    FILE_UPLOAD_WORKFLOW,
    GENERATE_THUMBNAILS_ACTIVITY,
    NON_RETRYABLE_ERRORS,
    PERSIST_FILE_ACTIVITY,
    PROMOTE_FILE_ACTIVITY,
    RECORD_UPLOAD_ACTIVITY,
    REJECT_FILE_ACTIVITY,
    REMOVE_FILE_ACTIVITY,
    VALIDATE_UPLOAD_ACTIVITY,
    VIRUS_SCAN_ACTIVITY,
    AnalysisResult,
    AssembleRequest,
    FileProcessingRequest,
    FileStatus,
    FileUploadRequest,
    MetadataResult,
    PersistFileRequest,
    PersistFileResult,
    ProcessedFile,
    ProcessingInput,
    PromoteRequest,
    PromoteResult,
    RecordUploadRequest,
    RecordUploadResult,
    RejectFileRequest,
    RemoveFileRequest,
    RemoveFileResult,
    ScanRequest,
    ScanResult,
    StagedObject,
    StepState,
    ThumbnailInfo,
    ThumbnailsResult,
    ValidateUploadRequest,
    ValidationResult,
    processing_workflow_id,
)
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_workers.common.failures import describe, is_cancellation
from adx_workers.common.progress import ProgressTracker
from adx_workers.common.saga import Saga, run_undo

Result = TypeVar("Result")

STEPS = {
    "assemble": 5,
    "record_upload": 10,
    "validate": 20,
    "virus_scan": 50,
    "promote": 65,
    "process": 90,
    "persist": 97,
}

# Database calls and small storage operations.
_SHORT = timedelta(seconds=30)
# Calls that stream the whole file (assemble, scan, promote): bounded by heartbeats, not
# by a guess at how long a large file takes.
_STREAMING = timedelta(hours=2)
_HEARTBEAT = timedelta(seconds=30)
_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE_ERRORS),
)
# A scanner that stays away this long fails the upload rather than hold it for ever; the
# scan is never skipped.
_SCAN_DEADLINE = timedelta(hours=6)
_STEP_DEADLINE = timedelta(hours=1)
_UNDO_DEADLINE = timedelta(hours=1)
# Optional steps: one attempt inside the upload (the deadline bounds them); the follow-up
# workflow retries.
_OPTIONAL_RETRY = RetryPolicy(maximum_attempts=2, initial_interval=timedelta(seconds=1))

# The reasons a file is rejected, as recorded and as the failure's type.
_REJECTION_TYPES = {"FileRejected", "FileInfected", "FileTooLargeToScan", "UploadChanged"}


class _RejectedError(Exception):
    def __init__(self, reason: str, detail: str, error_type: str, keep_staged: bool) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.error_type = error_type
        self.keep_staged = keep_staged


# PINNED under Worker Versioning (see tenant_provisioning_workflow).
@workflow.defn(name=FILE_UPLOAD_WORKFLOW)
class FileUploadWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker(STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.run
    async def run(self, request: FileUploadRequest) -> ProcessedFile:
        saga = Saga()
        step = "assemble"
        promoted = False
        try:
            staged = await self._staged(request)
            step = "record_upload"
            await self._call(
                step,
                RECORD_UPLOAD_ACTIVITY,
                RecordUploadRequest(
                    tenant_id=request.tenant_id,
                    file_id=request.file_id,
                    name=request.name,
                    declared_type=request.declared_type,
                    owner_id=request.owner_id,
                    staged=staged.location,
                    size=staged.size,
                    sha256=staged.sha256,
                ),
                RecordUploadResult,
            )
            step = "validate"
            validation = await self._screen(request, staged)
            step = "promote"
            # Registered before the call: a promotion that timed out may still have copied.
            # The undo removes the object the record points to, its thumbnails, the staged
            # bytes and the record.
            saga.push(
                step,
                lambda: self._undo(
                    REMOVE_FILE_ACTIVITY,
                    RemoveFileRequest(request.tenant_id, request.file_id, staged.location),
                ),
            )
            promoted_to = await self._call(
                step,
                PROMOTE_FILE_ACTIVITY,
                PromoteRequest(request.tenant_id, request.file_id, staged.location, staged.sha256),
                PromoteResult,
                attempt_timeout=_STREAMING,
                heartbeat=_HEARTBEAT,
            )
            promoted = True
            step = "process"
            source = ProcessingInput(
                tenant_id=request.tenant_id,
                file_id=request.file_id,
                location=promoted_to.location,
                content_type=validation.content_type,
                kind=validation.kind,
                size=staged.size,
                options=request.options,
                sha256=staged.sha256,
            )
            self._progress.started(step)
            outcome = await self._process(source)
            self._progress.finished(step)
            step = "persist"
            await self._call(
                step,
                PERSIST_FILE_ACTIVITY,
                PersistFileRequest(
                    tenant_id=request.tenant_id,
                    file_id=request.file_id,
                    owner_id=request.owner_id,
                    location=promoted_to.location,
                    content_type=validation.content_type,
                    size=staged.size,
                    sha256=staged.sha256,
                    processing=outcome.states,
                    thumbnails=outcome.thumbnails,
                    metadata=outcome.metadata,
                    analysis=outcome.analysis,
                ),
                PersistFileResult,
            )
        except _RejectedError as rejected:
            await self._reject(request, rejected)
            raise ApplicationError(
                f"the file was rejected: {rejected.detail}",
                {"reason": rejected.reason, "detail": rejected.detail},
                type=rejected.error_type,
                non_retryable=True,
            ) from None
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            await self._roll_back(request, saga, step, err, promoted)
            if is_cancellation(err):
                raise asyncio.CancelledError from err
            raise

        follow_up = await self._hand_over(request, source, outcome.states)
        self._progress.done()
        return ProcessedFile(
            file_id=request.file_id,
            name=request.name,
            content_type=validation.content_type,
            size=staged.size,
            sha256=staged.sha256,
            status=FileStatus.READY.value,
            storage_provider=promoted_to.location.provider,
            processing=outcome.states,
            marks=[
                f"{name}_{state}" for name, state in outcome.states.items() if state == "pending"
            ],
            thumbnails=outcome.thumbnails,
            metadata=outcome.metadata,
            analysis=outcome.analysis,
            processing_operation=follow_up,
        )

    async def _staged(self, request: FileUploadRequest) -> StagedObject:
        """The staged object: given by a direct upload, assembled for a resumable one."""
        if not request.parts:
            if request.sha256 is None:
                raise ApplicationError(
                    "a direct upload must carry its sha256", type="FileRejected", non_retryable=True
                )
            return StagedObject(request.staged, request.size, request.sha256)
        return await self._call(
            "assemble",
            ASSEMBLE_UPLOAD_ACTIVITY,
            AssembleRequest(
                tenant_id=request.tenant_id,
                upload_id=request.upload_id or request.file_id,
                provider=request.staged.provider,
                parts=request.parts,
                target_key=request.staged.key,
            ),
            StagedObject,
            attempt_timeout=_STREAMING,
            heartbeat=_HEARTBEAT,
        )

    async def _screen(self, request: FileUploadRequest, staged: StagedObject) -> ValidationResult:
        """Validate, then scan. Either may reject the file."""
        validation = await self._rejecting(
            "validate",
            VALIDATE_UPLOAD_ACTIVITY,
            ValidateUploadRequest(
                tenant_id=request.tenant_id,
                file_id=request.file_id,
                staged=staged.location,
                name=request.name,
                declared_type=request.declared_type,
                size=staged.size,
            ),
            ValidationResult,
        )
        scan = await self._rejecting(
            "virus_scan",
            VIRUS_SCAN_ACTIVITY,
            ScanRequest(
                request.tenant_id, request.file_id, staged.location, staged.size, staged.sha256
            ),
            ScanResult,
            attempt_timeout=_STREAMING,
            heartbeat=_HEARTBEAT,
            deadline=_SCAN_DEADLINE,
        )
        self._progress.count("scanned_bytes", scan.scanned_bytes)
        if not scan.clean:
            signature = scan.signature or "unknown"
            raise _RejectedError("infected", signature, FILE_INFECTED, keep_staged=True)
        return validation

    async def _rejecting(
        self,
        step: str,
        activity: str,
        arg: object,
        result_type: type[Result],
        **options: Any,
    ) -> Result:
        try:
            return await self._call(step, activity, arg, result_type, **options)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type in _REJECTION_TYPES:
                details = cause.details[0] if cause.details else {}
                reason = (
                    details.get("reason", "invalid") if isinstance(details, dict) else "invalid"
                )
                raise _RejectedError(
                    reason, cause.message, cause.type or "FileRejected", keep_staged=False
                ) from None
            raise

    async def _process(self, source: ProcessingInput) -> _Outcome:
        """Thumbnails, metadata and analysis at once, under the deadline. What is late is
        cancelled and marked pending; what failed is marked pending too."""
        options = source.options
        wanted: dict[str, tuple[str, type[Any]]] = {
            "metadata": (EXTRACT_METADATA_ACTIVITY, MetadataResult)
        }
        if options.thumbnails and source.kind == "image":
            wanted["thumbnails"] = (GENERATE_THUMBNAILS_ACTIVITY, ThumbnailsResult)
        if options.analysis:
            wanted["analysis"] = (ANALYZE_CONTENT_ACTIVITY, AnalysisResult)
        deadline = timedelta(seconds=options.deadline_seconds)
        handles = {
            name: workflow.start_activity(
                activity,
                source,
                result_type=result_type,
                start_to_close_timeout=deadline,
                heartbeat_timeout=_HEARTBEAT,
                retry_policy=_OPTIONAL_RETRY,
            )
            for name, (activity, result_type) in wanted.items()
        }
        everything = asyncio.gather(*handles.values(), return_exceptions=True)
        try:
            await workflow.wait([everything], timeout=deadline.total_seconds())
        except asyncio.CancelledError:
            # The upload itself was cancelled: stop the steps before the rollback removes
            # the file they read.
            for handle in handles.values():
                handle.cancel()
            raise
        outcome = _Outcome(states={"thumbnails": StepState.SKIPPED.value})
        if "analysis" not in wanted:
            outcome.states["analysis"] = StepState.SKIPPED.value
        for name, handle in handles.items():
            if not handle.done():
                handle.cancel()
                outcome.states[name] = StepState.PENDING.value
                self._progress.failed(name, "late: left to file_processing_workflow")
                continue
            error = handle.exception()
            if error is not None:
                outcome.states[name] = StepState.PENDING.value
                self._progress.failed(name, describe(error))
                continue
            outcome.take(name, handle.result())
        # The cancelled ones settle at once (TRY_CANCEL); collect them so nothing dangles.
        await everything
        return outcome

    async def _hand_over(
        self, request: FileUploadRequest, source: ProcessingInput, states: dict[str, str]
    ) -> str | None:
        pending = [name for name, state in states.items() if state == StepState.PENDING.value]
        if not pending:
            return None
        follow_up = processing_workflow_id(request.file_id)
        try:
            # ABANDON: it outlives this upload, which is done once the file is readable.
            await workflow.start_child_workflow(
                FILE_PROCESSING_WORKFLOW,
                FileProcessingRequest(
                    tenant_id=request.tenant_id,
                    file_id=request.file_id,
                    steps=pending,
                    input=source,
                ),
                id=follow_up,
                parent_close_policy=ParentClosePolicy.ABANDON,
                # The tenant and correlation id, so the API serves it as the same tenant's
                # operation.
                search_attributes=workflow.info().typed_search_attributes,
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.info("processing already running", extra={"id": follow_up})
        return follow_up

    async def _reject(self, request: FileUploadRequest, rejected: _RejectedError) -> None:
        self._progress.failed(self._progress.step, f"{rejected.reason}: {rejected.detail}")
        await self._undo(
            REJECT_FILE_ACTIVITY,
            RejectFileRequest(
                tenant_id=request.tenant_id,
                file_id=request.file_id,
                reason=rejected.reason,
                detail=rejected.detail,
                actor_id=request.owner_id,
                keep_staged=rejected.keep_staged,
                staged=request.staged,
            ),
        )
        self._progress.done("rejected", complete=False)

    async def _roll_back(
        self,
        request: FileUploadRequest,
        saga: Saga,
        step: str,
        err: BaseException,
        promoted: bool,
    ) -> None:
        async def then() -> None:
            if is_cancellation(err):
                # A cancelled upload leaves nothing: no staged bytes, no record.
                await self._undo(
                    REMOVE_FILE_ACTIVITY,
                    RemoveFileRequest(request.tenant_id, request.file_id, request.staged),
                )
            elif not promoted:
                # Nothing readable was made: the staged bytes go, and the record says why.
                await self._undo(
                    REJECT_FILE_ACTIVITY,
                    RejectFileRequest(
                        tenant_id=request.tenant_id,
                        file_id=request.file_id,
                        reason="failed",
                        detail=describe(err),
                        actor_id=request.owner_id,
                        keep_staged=False,
                        staged=request.staged,
                    ),
                )

        await saga.roll_back(self._progress, step, err, then=then)

    async def _call(
        self,
        step: str,
        activity: str,
        arg: object,
        result_type: type[Result],
        *,
        attempt_timeout: timedelta = _SHORT,
        heartbeat: timedelta | None = None,
        deadline: timedelta = _STEP_DEADLINE,
    ) -> Result:
        self._progress.started(step)
        result: Result = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=attempt_timeout,
            schedule_to_close_timeout=deadline,
            heartbeat_timeout=heartbeat,
            retry_policy=_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if workflow.cancellation_reason() is not None:
            raise asyncio.CancelledError
        self._progress.finished(step)
        return result

    async def _undo(self, activity: str, arg: object) -> RemoveFileResult:
        return await run_undo(
            activity, arg, RemoveFileResult, attempt_timeout=_SHORT, deadline=_UNDO_DEADLINE
        )


class _Outcome:
    """What the optional steps produced, and each step's state."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.thumbnails: list[ThumbnailInfo] = []
        self.metadata: dict[str, Any] = {}
        self.analysis: AnalysisResult | None = None

    def take(self, name: str, result: object) -> None:
        if isinstance(result, ThumbnailsResult):
            self.thumbnails = result.thumbnails
            self.states[name] = StepState.SKIPPED.value if result.skipped else StepState.DONE.value
        elif isinstance(result, MetadataResult):
            self.metadata = result.metadata
            self.states[name] = StepState.DONE.value
        elif isinstance(result, AnalysisResult):
            self.analysis = result
            self.states[name] = StepState.SKIPPED.value if result.skipped else StepState.DONE.value
