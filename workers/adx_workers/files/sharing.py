"""file_sharing_workflow: share a file with users or groups of its tenant, or as a link.

validate_share → create_share → notify_recipients.

- The grants (or the link) are made in one transaction by ``create_share``; its undo,
  ``revoke_share``, is registered before it runs. A failure or a cancel before the share
  exists leaves nothing; one after it revokes the share, so nothing usable is left.
- Notifications come last and do not undo the share: a share is useful without its mail
  (the recipient finds the file among those shared with them, the sharer has the link).
  A notification that fails for good is recorded in the progress (a ``step_failed``
  event and the ``notify_failed`` counter) and the operation still succeeds.
- Expiry is not waited for: it is checked on every access, so the workflow ends as soon
  as the recipients are told.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

from adx_core.contracts.files import (
    CREATE_SHARE_ACTIVITY,
    FILE_NOT_FOUND,
    FILE_SHARING_WORKFLOW,
    REVOKE_SHARE_ACTIVITY,
    SHARE_REFUSED,
    VALIDATE_SHARE_ACTIVITY,
    CreateShareResult,
    FileShareRequest,
    RevokeShareRequest,
    RevokeShareResult,
    ShareResult,
    ValidateShareResult,
)
from adx_core.contracts.notifications import (
    NOTIFICATION_REJECTED,
    SEND_NOTIFICATION_ACTIVITY,
    NotificationRequest,
    NotificationResult,
    Template,
)
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_workers.common.failures import describe, is_cancellation
from adx_workers.common.progress import ProgressTracker
from adx_workers.common.saga import Saga, run_undo

Result = TypeVar("Result")

STEPS = {"validate_share": 20, "create_share": 60, "notify_recipients": 100}
MAX_GRANTEES = 50
MAX_NOTIFY_EMAILS = 20

# Database calls take milliseconds; one stuck for 10 s is cut off and retried elsewhere.
_DB_TIMEOUT = timedelta(seconds=10)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=[SHARE_REFUSED, FILE_NOT_FOUND],
)
# A share is asked for while the sharer waits: a step that keeps failing gives up soon.
_STEP_DEADLINE = timedelta(minutes=2)
# Undos must finish even when the database is flaky; they retry longer.
_UNDO_TIMEOUT = timedelta(minutes=10)
# Mail servers are slower and flakier than the database; a mail still failing after
# 10 minutes is given up (the share stays).
_NOTIFY_TIMEOUT = timedelta(seconds=30)
_NOTIFY_DEADLINE = timedelta(minutes=10)
_NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[NOTIFICATION_REJECTED],
)


def _refuse(message: str) -> ApplicationError:
    return ApplicationError(message, type=SHARE_REFUSED, non_retryable=True)


def _check(request: FileShareRequest) -> None:
    """Shape checks that need no I/O (the API checks them too); the validate activity
    checks the rest against the database."""
    if request.link == bool(request.grantees):
        raise _refuse("a share is either a link or grants to users and groups")
    if len(request.grantees) > MAX_GRANTEES:
        raise _refuse(f"at most {MAX_GRANTEES} grantees")
    if len({(g.kind, g.id) for g in request.grantees}) != len(request.grantees):
        raise _refuse("the grantees must be distinct")
    if request.link:
        if not request.token_hash or not request.link_path or request.expires_at is None:
            raise _refuse("a link needs a token hash, a path and an expiry")
        if len(request.notify_emails) > MAX_NOTIFY_EMAILS:
            raise _refuse(f"a link may notify at most {MAX_NOTIFY_EMAILS} addresses")
    elif request.token_hash or request.password_hash or request.notify_emails:
        raise _refuse("only a link has a token, a password or addresses to notify")


def notification_key(share_id: str, email: str) -> str:
    """One notification per share and recipient: a retry finds it sent. A digest keeps the
    address out of the key (keys are stored and logged)."""
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:24]
    return f"file-share-{share_id}-{digest}"


# PINNED under Worker Versioning: a share finishes on the code it started with.
@workflow.defn(name=FILE_SHARING_WORKFLOW)
class FileSharingWorkflow:
    def __init__(self) -> None:
        self._progress = ProgressTracker(STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    @workflow.run
    async def run(self, request: FileShareRequest) -> ShareResult:
        saga = Saga()
        step = "validate_share"
        try:
            self._progress.started(step)
            _check(request)
            validated = await self._call(VALIDATE_SHARE_ACTIVITY, request, ValidateShareResult)
            self._progress.count("recipients", len(validated.recipients))
            self._progress.finished(step)

            step = "create_share"
            self._progress.started(step)
            revoke = RevokeShareRequest(request.tenant_id, request.share_id)
            saga.push(step, lambda: self._revoke(revoke))
            created = await self._call(CREATE_SHARE_ACTIVITY, request, CreateShareResult)
            self._progress.count("grants", created.grants)
            self._progress.finished(step)

            step = "notify_recipients"
            self._progress.started(step)
            notified, notify_failed = await self._notify(request, validated)
            self._progress.finished(step)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            await self._roll_back(saga, step, err)
            raise

        self._progress.done()
        return ShareResult(
            share_id=request.share_id,
            file_id=request.file_id,
            role=request.role.value,
            grants=created.grants,
            notified=notified,
            link=request.link_path if request.link else None,
            expires_at=request.expires_at,
            notify_failed=notify_failed,
        )

    async def _notify(
        self, request: FileShareRequest, validated: ValidateShareResult
    ) -> tuple[int, int]:
        """Tell every recipient at once; a failure is recorded, not raised. Returns how many
        were told and how many could not be."""
        results = await asyncio.gather(
            *(self._send(request, validated, to) for to in validated.recipients),
            return_exceptions=True,
        )
        if workflow.cancellation_reason() is not None:
            raise asyncio.CancelledError
        failures = [r for r in results if isinstance(r, BaseException)]
        notified = len(results) - len(failures)
        self._progress.count("notified", notified)
        self._progress.count("notify_failed", len(failures))
        if failures:
            self._progress.failed(
                "notify_recipients",
                f"{len(failures)} of {len(results)} notifications failed, the share stays: "
                f"{describe(failures[0])}",
            )
        return notified, len(failures)

    async def _send(
        self, request: FileShareRequest, validated: ValidateShareResult, to: str
    ) -> NotificationResult:
        link = request.link_path if request.link else f"/v1/files/{request.file_id}"
        expires = request.expires_at.isoformat(timespec="minutes") if request.expires_at else None
        note = f"{validated.sharer_name} wrote: {request.message}" if request.message else ""
        result: NotificationResult = await workflow.execute_activity(
            SEND_NOTIFICATION_ACTIVITY,
            NotificationRequest(
                key=notification_key(request.share_id, to),
                tenant_id=request.tenant_id,
                to=to,
                template=Template.FILE_SHARED,
                params={
                    "sharer_name": validated.sharer_name,
                    "file_name": validated.file_name,
                    "role": request.role.value,
                    "link": link or "",
                    "expires_at": expires or "when the share is revoked",
                    "note": note,
                },
            ),
            result_type=NotificationResult,
            start_to_close_timeout=_NOTIFY_TIMEOUT,
            schedule_to_close_timeout=_NOTIFY_DEADLINE,
            retry_policy=_NOTIFY_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return result

    async def _call(self, activity: str, arg: object, result_type: type[Result]) -> Result:
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
            # Cancelled while the step ran and the step succeeded anyway: honour the cancel
            # now (its undo is already registered).
            raise asyncio.CancelledError
        return result

    async def _revoke(self, request: RevokeShareRequest) -> RevokeShareResult:
        return await run_undo(
            REVOKE_SHARE_ACTIVITY,
            request,
            RevokeShareResult,
            attempt_timeout=_DB_TIMEOUT,
            deadline=_UNDO_TIMEOUT,
        )

    async def _roll_back(self, saga: Saga, step: str, err: BaseException) -> None:
        await saga.roll_back(self._progress, step, err)
        if is_cancellation(err):
            raise asyncio.CancelledError from err
