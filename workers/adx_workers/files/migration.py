"""file_migration_workflow: move a tenant's files, or a folder of them, to another provider.

start → inventory → for each page: copy the batch (verified) → switch its records → ...
→ commit → delete the source (if asked).

- Failover: when a batch keeps failing on the target after its retry policy is spent, the
  records already switched to it go back to the source, its copies are removed as far as
  it allows, and the whole copy starts again on the next target. The source is untouched
  until the commit, so nothing is lost by starting over.
- Rollback: a permanent failure or a cancel before the commit restores every switched
  record to the source and removes what the migration wrote on any target.
- Continue-as-new: after ``batches_per_run`` batches (or when the server suggests it) the
  run continues as a new one from a checkpoint: the page token, the counters and the
  progress event numbers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError
from temporalio.workflow import ActivityCancellationType

from adx_core.contracts import search
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.storage import (
    COPY_BATCH_ACTIVITY,
    DELETE_COPIES_ACTIVITY,
    DELETE_SOURCE_ACTIVITY,
    FILE_MIGRATION_WORKFLOW,
    FINISH_MIGRATION_ACTIVITY,
    INVALID_MIGRATION,
    INVENTORY_ACTIVITY,
    LIST_MIGRATION_PAGE_ACTIVITY,
    MAX_BATCH_SIZE,
    MAX_FALLBACK_TARGETS,
    MAX_PARALLELISM,
    NON_RETRYABLE_ERRORS,
    PROBE_TARGET_ACTIVITY,
    RESTORE_RECORDS_ACTIVITY,
    START_MIGRATION_ACTIVITY,
    SWITCH_RECORDS_ACTIVITY,
    TARGET_ERRORS,
    BatchResult,
    CopyBatch,
    DeleteCopies,
    DeletedObjects,
    DeleteSource,
    FileMigrationRequest,
    FinishMigration,
    FinishResult,
    Inventory,
    InventoryRequest,
    ListPageRequest,
    MigrationCheckpoint,
    MigrationPlan,
    MigrationResult,
    MigrationStatus,
    ObjectPage,
    RecordsResult,
    RestoreRecords,
    StartMigration,
    SwitchRecords,
    TargetFailure,
    TargetProbe,
)
from adx_workers.common.failures import describe, is_cancellation
from adx_workers.common.progress import ProgressTracker

Result = TypeVar("Result")

STEPS = {"start": 1, "inventory": 3, "copy": 95, "commit": 97, "delete_source": 100}
_COPY_SPAN = 92  # the percent points the copy step covers, from 3 to 95

# Bookkeeping calls take milliseconds; storage listings a little more.
_QUICK = timedelta(seconds=30)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=list(NON_RETRYABLE_ERRORS),
)
# A listing or bookkeeping call that keeps failing this long ends the migration (rolled back).
_STEP_DEADLINE = timedelta(minutes=10)
# A batch may move large objects: it is watched through its heartbeats, not a short timeout.
_BATCH_HEARTBEAT = timedelta(seconds=20)
_BATCH_TIMEOUT = timedelta(hours=2)
# Undos run until they are done: a rollback that stops halfway helps nobody.
_UNDO_TIMEOUT = timedelta(hours=1)
# A failed target is usually down; cleaning it is tried briefly, and what is left is named.
_CLEANUP_ATTEMPTS = 2


def _check(request: FileMigrationRequest) -> None:
    """Shape checks that need no I/O; the start activity checks the rest."""
    problems = []
    if not 1 <= request.batch_size <= MAX_BATCH_SIZE:
        problems.append(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    if not 1 <= request.parallelism <= MAX_PARALLELISM:
        problems.append(f"parallelism must be between 1 and {MAX_PARALLELISM}")
    if len(request.fallback_targets) > MAX_FALLBACK_TARGETS:
        problems.append(f"at most {MAX_FALLBACK_TARGETS} fallback targets")
    if not 1 <= request.target_attempts <= 20:
        problems.append("target_attempts must be between 1 and 20")
    if request.batches_per_run < 1:
        problems.append("batches_per_run must be at least 1")
    if problems:
        raise ApplicationError("; ".join(problems), type=INVALID_MIGRATION, non_retryable=True)


class _TargetFailedError(Exception):
    def __init__(self, target: str, cause: str) -> None:
        super().__init__(cause)
        self.target = target
        self.cause = cause


def _is_target_failure(err: ActivityError) -> bool:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type in TARGET_ERRORS
    # Every attempt timed out: the target hangs rather than refuses.
    return isinstance(cause, ActivityTimeoutError)


# PINNED under Worker Versioning: a migration finishes on the code it started with.
@workflow.defn(name=FILE_MIGRATION_WORKFLOW)
class FileMigrationWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker(STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.run
    async def run(self, request: FileMigrationRequest) -> MigrationResult:
        _check(request)
        self._request = request
        self._migration_id = request.migration_id or str(workflow.uuid4())
        self._targets = [request.target, *request.fallback_targets]
        checkpoint = request.checkpoint
        self._progress = ProgressTracker(
            STEPS,
            last_seq=checkpoint.last_seq if checkpoint else 0,
            percent=STEPS["inventory"] if checkpoint else 0,
        )
        self._state = checkpoint or MigrationCheckpoint(
            target_index=0,
            page_token=None,
            files_total=0,
            bytes_total=0,
            files_done=0,
            bytes_done=0,
            files_copied=0,
            files_skipped=0,
            records_switched=0,
            runs=1,
            last_seq=0,
        )
        self._started: MigrationPlan | None = None

        try:
            self._progress.started("start")
            plan = await self._call(
                START_MIGRATION_ACTIVITY,
                StartMigration(
                    migration_id=self._migration_id,
                    tenant_id=request.tenant_id,
                    source=request.source,
                    targets=self._targets,
                    prefix=request.prefix,
                    delete_source=request.delete_source,
                    requested_by=request.requested_by,
                ),
                MigrationPlan,
            )
            self._started = plan
            self._progress.finished("start")
            if checkpoint is None:
                self._progress.started("inventory")
                inventory = await self._undo(
                    INVENTORY_ACTIVITY, InventoryRequest(plan.source, plan.prefix), Inventory
                )
                self._state = dataclasses.replace(
                    self._state, files_total=inventory.files, bytes_total=inventory.bytes
                )
                self._progress.count("files_total", inventory.files)
                self._progress.count("bytes_total", inventory.bytes)
                self._honour_cancel()
                self._progress.finished("inventory")
            target = await self._copy_with_failover()
        except (Exception, asyncio.CancelledError) as err:
            # (Continue-as-new is a BaseException and passes through untouched.)
            await self._roll_back(err)
            raise
        # Past this point a cancel is too late: the commit runs to its end, and the
        # workflow returns its result.
        commit = asyncio.ensure_future(self._commit(target))
        try:
            return await asyncio.shield(commit)
        except asyncio.CancelledError:
            return await commit

    # --- copying ------------------------------------------------------------------------

    async def _copy_with_failover(self) -> str:
        while self._state.target_index < len(self._targets):
            target = self._targets[self._state.target_index]
            try:
                await self._copy_all(target)
                return target
            except _TargetFailedError as failed:
                await self._abandon(failed)
        causes = "; ".join(f"{f.target}: {f.cause}" for f in self._state.failed_targets)
        raise ApplicationError(f"no target took the files ({causes})", non_retryable=True)

    async def _copy_all(self, target: str) -> None:
        self._progress.started("copy")
        workflow.set_current_details(f"Copying to **{target}**")
        if self._state.page_token is None:
            # A target that holds nothing under the prefix cannot already hold any of the
            # files: the batches then skip asking it, object by object.
            probe = await self._on_target(
                target,
                PROBE_TARGET_ACTIVITY,
                InventoryRequest(target, self._plan.prefix),
                TargetProbe,
                timedelta(seconds=30),
            )
            self._state = dataclasses.replace(self._state, target_empty=probe.empty)
        batches = 0
        while True:
            page = await self._call(
                LIST_MIGRATION_PAGE_ACTIVITY,
                ListPageRequest(
                    provider=self._plan.source,
                    prefix=self._plan.prefix,
                    page_token=self._state.page_token,
                    page_size=self._request.batch_size,
                ),
                ObjectPage,
            )
            if page.objects:
                await self._copy_page(target, page)
                batches += 1
            self._state = dataclasses.replace(self._state, page_token=page.next_token)
            if page.next_token is None:
                self._progress.finished("copy")
                return
            if (
                batches >= self._request.batches_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                self._continue_as_new()

    async def _copy_page(self, target: str, page: ObjectPage) -> None:
        result = await self._on_target(
            target,
            COPY_BATCH_ACTIVITY,
            CopyBatch(
                migration_id=self._migration_id,
                tenant_id=self._request.tenant_id,
                source=self._plan.source,
                target=target,
                objects=page.objects,
                parallelism=self._request.parallelism,
                check_target=not self._state.target_empty,
            ),
            BatchResult,
            _BATCH_TIMEOUT,
        )
        switched = await self._call(
            SWITCH_RECORDS_ACTIVITY,
            SwitchRecords(
                migration_id=self._migration_id,
                tenant_id=self._request.tenant_id,
                target=target,
                from_providers=[self._plan.source, *self._failed_names()],
                keys=[copied.key for copied in result.objects],
            ),
            RecordsResult,
        )
        copied = [o for o in result.objects if o.copied]
        state = self._state
        self._state = dataclasses.replace(
            state,
            files_done=state.files_done + len(result.objects) + result.vanished,
            bytes_done=state.bytes_done + sum(o.size for o in result.objects),
            files_copied=state.files_copied + len(copied),
            bytes_copied=state.bytes_copied + sum(o.size for o in copied),
            files_skipped=state.files_skipped + len(result.objects) - len(copied),
            records_switched=state.records_switched + switched.records,
        )
        self._report(target)

    def _report(self, target: str) -> None:
        state = self._state
        done = state.bytes_done / state.bytes_total if state.bytes_total else 1.0
        if not state.bytes_total and state.files_total:
            done = state.files_done / state.files_total
        counters = {
            "files_total": state.files_total,
            "files_done": state.files_done,
            "bytes_total": state.bytes_total,
            "bytes_done": state.bytes_done,
            "files_copied": state.files_copied,
            "files_skipped": state.files_skipped,
            "records_switched": state.records_switched,
            "target_index": state.target_index,
        }
        self._progress.advance(STEPS["inventory"] + int(done * _COPY_SPAN), counters)
        workflow.set_current_details(
            f"Copying to **{target}**: {state.files_done} of {state.files_total} files, "
            f"{state.bytes_done} of {state.bytes_total} bytes"
        )

    @property
    def _plan(self) -> MigrationPlan:
        """What the start step resolved; every step after it reads it."""
        if self._started is None:  # pragma: no cover - the start step always runs first
            raise RuntimeError("the migration has not started")
        return self._started

    def _failed_names(self) -> list[str]:
        return [failure.target for failure in self._state.failed_targets]

    async def _abandon(self, failed: _TargetFailedError) -> None:
        """Give up a target: its records go back to the source, its copies go if it lets
        them, and the copy starts over on the next target."""
        self._progress.failed("copy", f"{failed.target}: {failed.cause}")
        await self._undo(
            RESTORE_RECORDS_ACTIVITY,
            RestoreRecords(
                self._migration_id, self._request.tenant_id, self._plan.source, [failed.target]
            ),
            RecordsResult,
        )
        orphans = 0
        try:
            await workflow.execute_activity(
                DELETE_COPIES_ACTIVITY,
                DeleteCopies(self._migration_id, self._request.tenant_id, failed.target),
                result_type=DeletedObjects,
                start_to_close_timeout=_QUICK,
                retry_policy=RetryPolicy(maximum_attempts=_CLEANUP_ATTEMPTS),
            )
        except ActivityError:
            orphans = self._state.files_copied
        state = self._state
        self._state = dataclasses.replace(
            state,
            target_index=state.target_index + 1,
            page_token=None,
            files_done=0,
            bytes_done=0,
            files_copied=0,
            bytes_copied=0,
            files_skipped=0,
            records_switched=0,
            target_empty=False,
            failed_targets=[
                *state.failed_targets,
                TargetFailure(failed.target, failed.cause, orphaned_copies=orphans),
            ],
        )

    def _continue_as_new(self) -> None:
        state = dataclasses.replace(
            self._state,
            runs=self._state.runs + 1,
            last_seq=self._progress.last_seq,
        )
        workflow.continue_as_new(
            dataclasses.replace(
                self._request,
                source=self._plan.source,
                migration_id=self._migration_id,
                checkpoint=state,
            )
        )

    # --- the end: commit, or roll back --------------------------------------------------

    async def _commit(self, target: str) -> MigrationResult:
        self._progress.started("commit")
        state = self._state
        result = MigrationResult(
            migration_id=self._migration_id,
            tenant_id=self._request.tenant_id,
            source=self._plan.source,
            target=target,
            files_total=state.files_total,
            bytes_total=state.bytes_total,
            files_copied=state.files_copied,
            files_skipped=state.files_skipped,
            bytes_copied=state.bytes_copied,
            records_switched=state.records_switched,
            source_deleted=0,
            failed_targets=state.failed_targets,
            runs=state.runs,
        )
        # The commit point: from here on the target holds the files and nothing rolls back.
        await self._finish(MigrationStatus.COMMITTED, target, result)
        self._progress.finished("commit")
        if self._request.delete_source:
            self._progress.started("delete_source")
            deleted = await self._undo(
                DELETE_SOURCE_ACTIVITY,
                DeleteSource(
                    self._migration_id, self._request.tenant_id, self._plan.source, target
                ),
                DeletedObjects,
            )
            result = dataclasses.replace(result, source_deleted=deleted.deleted)
            await self._finish(MigrationStatus.COMMITTED, target, result)
            self._progress.finished("delete_source")
        self._progress.done()
        workflow.upsert_search_attributes([search.PERCENT.value_set(100)])
        workflow.set_current_details(
            f"Moved {state.files_done} files to **{target}** "
            f"({state.files_copied} copied, {state.files_skipped} already there)"
        )
        return result

    async def _roll_back(self, err: BaseException) -> None:
        cause = describe(err)
        if self._started is None:
            return  # refused at the start: nothing was recorded, copied or switched
        self._progress.failed(self._progress.step, cause)
        self._progress.compensating("restore_records")
        tried = self._targets[: self._state.target_index + 1]
        await self._undo(
            RESTORE_RECORDS_ACTIVITY,
            RestoreRecords(self._migration_id, self._request.tenant_id, self._plan.source, tried),
            RecordsResult,
        )
        self._progress.compensating("delete_copies")
        left: list[str] = []
        for target in tried:
            try:
                await workflow.execute_activity(
                    DELETE_COPIES_ACTIVITY,
                    DeleteCopies(self._migration_id, self._request.tenant_id, target),
                    result_type=DeletedObjects,
                    start_to_close_timeout=_UNDO_TIMEOUT,
                    heartbeat_timeout=_BATCH_HEARTBEAT,
                    # A target that failed over is likely still down: try it briefly.
                    retry_policy=(
                        RetryPolicy(maximum_attempts=_CLEANUP_ATTEMPTS)
                        if target in self._failed_names()
                        else _RETRY
                    ),
                )
            except ActivityError as cleanup_error:
                left.append(f"{target}: {describe(cleanup_error)}")
                self._progress.compensation_failed(f"copies left on {target}")
        status = MigrationStatus.FAILED if left else MigrationStatus.ROLLED_BACK
        failure = cause if not left else f"{cause}; copies left on {', '.join(left)}"
        await self._finish(status, None, None, failure)
        self._progress.done("cancelled" if is_cancellation(err) else "rolled_back", complete=False)
        workflow.set_current_details(f"Rolled back: {cause}")

    async def _finish(
        self,
        status: MigrationStatus,
        target: str | None,
        result: MigrationResult | None,
        failure: str | None = None,
    ) -> None:
        await self._undo(
            FINISH_MIGRATION_ACTIVITY,
            FinishMigration(
                migration_id=self._migration_id,
                tenant_id=self._request.tenant_id,
                status=status,
                target=target,
                whole_tenant=self._plan.whole_tenant,
                result=result,
                failure=failure,
            ),
            FinishResult,
        )

    # --- activity calls -----------------------------------------------------------------

    async def _call(self, activity: str, arg: object, result_type: type[Result]) -> Result:
        result: Result = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=_QUICK,
            schedule_to_close_timeout=_STEP_DEADLINE,
            retry_policy=_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        self._honour_cancel()
        return result

    @staticmethod
    def _honour_cancel() -> None:
        """A cancel that arrived while a step ran, and the step succeeded anyway: stop now
        rather than carry on to the next step."""
        if workflow.cancellation_reason() is not None:
            raise asyncio.CancelledError

    async def _on_target(
        self,
        target: str,
        activity: str,
        arg: object,
        result_type: type[Result],
        attempt_timeout: timedelta,
    ) -> Result:
        """A step against the target: ``target_attempts`` attempts, then a failure of the
        target (failover) rather than of the migration."""
        try:
            result: Result = await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=attempt_timeout,
                heartbeat_timeout=_BATCH_HEARTBEAT,
                # A cancel waits for the step to stop, so the rollback never races it.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10),
                    maximum_attempts=self._request.target_attempts,
                    non_retryable_error_types=list(NON_RETRYABLE_ERRORS),
                ),
            )
        except ActivityError as err:
            if not is_cancellation(err) and _is_target_failure(err):
                raise _TargetFailedError(target, describe(err)) from err
            raise
        self._honour_cancel()
        return result

    async def _undo(self, activity: str, arg: object, result_type: type[Result]) -> Result:
        """Long steps (inventory, commit, compensation): watched through heartbeats and
        retried until done, never cut short."""
        result: Result = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=_UNDO_TIMEOUT,
            heartbeat_timeout=_BATCH_HEARTBEAT,
            retry_policy=_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return result
