"""file_processing_workflow: the optional steps an upload left pending, run again.

file_upload_workflow starts it (abandoned) when thumbnails, metadata or analysis ran late
or failed, so the upload completes without them. Here each step has no upload deadline,
only its own attempts; the record is updated with what each produced, and a step that
keeps failing is marked ``failed`` rather than retried for ever.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from adx_core.contracts.files import (
    ANALYZE_CONTENT_ACTIVITY,
    EXTRACT_METADATA_ACTIVITY,
    FILE_PROCESSING_WORKFLOW,
    GENERATE_THUMBNAILS_ACTIVITY,
    RECORD_PROCESSING_ACTIVITY,
    AnalysisResult,
    FileProcessingRequest,
    FileProcessingResult,
    MetadataResult,
    RecordProcessingRequest,
    RecordProcessingResult,
    StepState,
    ThumbnailsResult,
)
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_workers.common.failures import describe
from adx_workers.common.progress import ProgressTracker

_ACTIVITIES: dict[str, tuple[str, type[Any]]] = {
    "thumbnails": (GENERATE_THUMBNAILS_ACTIVITY, ThumbnailsResult),
    "metadata": (EXTRACT_METADATA_ACTIVITY, MetadataResult),
    "analysis": (ANALYZE_CONTENT_ACTIVITY, AnalysisResult),
}
# A large image or a slow analyzer may take a while; heartbeats tell a stuck one apart.
_ATTEMPT = timedelta(minutes=30)
_HEARTBEAT = timedelta(seconds=60)


@workflow.defn(name=FILE_PROCESSING_WORKFLOW)
class FileProcessingWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker({"process": 90, "record_processing": 100})

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.run
    async def run(self, request: FileProcessingRequest) -> FileProcessingResult:
        steps = [step for step in request.steps if step in _ACTIVITIES]
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=2),
            maximum_interval=timedelta(minutes=1),
            maximum_attempts=max(1, request.attempts),
        )
        self._progress.started("process")
        results = await asyncio.gather(
            *(
                workflow.execute_activity(
                    _ACTIVITIES[step][0],
                    request.input,
                    result_type=_ACTIVITIES[step][1],
                    start_to_close_timeout=_ATTEMPT,
                    heartbeat_timeout=_HEARTBEAT,
                    retry_policy=retry,
                )
                for step in steps
            ),
            return_exceptions=True,
        )
        self._progress.finished("process")
        record = _Record()
        for step, result in zip(steps, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, ActivityError | asyncio.CancelledError):
                    raise result
                record.processing[step] = StepState.FAILED.value
                self._progress.failed(step, describe(result))
            else:
                record.take(step, result)
        self._progress.started("record_processing")
        await workflow.execute_activity(
            RECORD_PROCESSING_ACTIVITY,
            RecordProcessingRequest(
                tenant_id=request.tenant_id,
                file_id=request.file_id,
                processing=record.processing,
                thumbnails=record.thumbnails,
                metadata=record.metadata,
                analysis=record.analysis,
            ),
            result_type=RecordProcessingResult,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(hours=1),
        )
        self._progress.finished("record_processing")
        self._progress.done()
        return FileProcessingResult(file_id=request.file_id, processing=record.processing)


class _Record:
    def __init__(self) -> None:
        self.processing: dict[str, str] = {}
        self.thumbnails: list[Any] | None = None
        self.metadata: dict[str, Any] | None = None
        self.analysis: AnalysisResult | None = None

    def take(self, step: str, result: object) -> None:
        state = StepState.DONE.value
        if isinstance(result, ThumbnailsResult):
            self.thumbnails = result.thumbnails
            state = StepState.SKIPPED.value if result.skipped else state
        elif isinstance(result, MetadataResult):
            self.metadata = result.metadata
        elif isinstance(result, AnalysisResult):
            self.analysis = result
            state = StepState.SKIPPED.value if result.skipped else state
        self.processing[step] = state
