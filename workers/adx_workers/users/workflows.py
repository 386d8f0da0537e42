"""User workflows: onboarding, updates (including removal), and switching tenants.

Each is all or nothing. Every step registers its undo before it runs (a step that timed
out may still have done its work, and every undo is a no-op when there is nothing to
undo), and a failure or a cancel runs the undos in reverse. Steps that cannot be undone
(an e-mail sent, sessions revoked) come last.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import ClassVar, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

from adx_core.contracts.notifications import (
    SEND_NOTIFICATION_ACTIVITY,
    NotificationRequest,
    NotificationResult,
    Template,
)
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.contracts.users import (
    CHANGE_ROLE_ACTIVITY,
    CREATE_IDENTITY_ACTIVITY,
    CREATE_INVITATION_ACTIVITY,
    CREATE_MEMBERSHIP_ACTIVITY,
    DELETE_IDENTITY_ACTIVITY,
    DELETE_INVITATION_ACTIVITY,
    DELETE_MEMBERSHIP_ACTIVITY,
    DELETE_SESSION_ACTIVITY,
    INVITATION_DAYS,
    ISSUE_SESSION_TOKEN_ACTIVITY,
    LOAD_TENANT_CONTEXT_ACTIVITY,
    LOAD_USER_FOR_UPDATE_ACTIVITY,
    NON_RETRYABLE,
    REMOVE_MEMBERSHIP_ACTIVITY,
    RESTORE_ACTIVE_TENANT_ACTIVITY,
    RESTORE_MEMBERSHIP_ACTIVITY,
    REVOKE_SESSIONS_ACTIVITY,
    SET_ACTIVE_TENANT_ACTIVITY,
    TENANT_SWITCH_WORKFLOW,
    UPDATE_IDENTITY_ACTIVITY,
    USER_ONBOARDING_WORKFLOW,
    USER_UPDATE_WORKFLOW,
    VALIDATE_ONBOARDING_ACTIVITY,
    VALIDATE_SWITCH_ACTIVITY,
    ActiveTenantChange,
    ActiveTenantRestore,
    ActiveTenantResult,
    IdentityInput,
    IdentityResult,
    IdentityUpdate,
    IdentityUpdateResult,
    InvitationInput,
    InvitationRef,
    InvitationResult,
    MembershipInput,
    MembershipRef,
    MembershipRemovalResult,
    MembershipRestore,
    MembershipResult,
    OnboardingValidation,
    OnboardingValidationInput,
    RoleChange,
    RoleChangeResult,
    SessionRef,
    SessionRevocation,
    SessionRevocationResult,
    SessionToken,
    SessionTokenInput,
    SwitchValidation,
    SwitchValidationInput,
    TenantContext,
    TenantContextInput,
    TenantSwitchRequest,
    TenantSwitchResult,
    UndoResult,
    UserOnboardingRequest,
    UserOnboardingResult,
    UserState,
    UserUpdateRequest,
    UserUpdateResult,
)
from adx_workers.common.failures import is_cancellation
from adx_workers.common.progress import ProgressTracker
from adx_workers.common.saga import Saga, run_undo

Result = TypeVar("Result")

# Database calls take milliseconds; one stuck for 10 s is cut off and retried elsewhere.
_DB_TIMEOUT = timedelta(seconds=10)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE),
)
# A step that keeps failing this long gives up and the saga rolls back. A switch is
# answered while the user waits, so it gives up much sooner than onboarding.
_STEP_DEADLINE = timedelta(minutes=2)
_SWITCH_STEP_DEADLINE = timedelta(seconds=20)
# Undos must finish even when the database is flaky; they retry longer.
_UNDO_TIMEOUT = timedelta(minutes=10)
# Mail servers are slower and flakier than the database.
_NOTIFY_TIMEOUT = timedelta(seconds=30)


class _SagaWorkflow:
    """Shared plumbing: progress, activity calls with their policies, rollback."""

    # Each step and the percent reached when it finishes.
    steps: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        self._progress = ProgressTracker(self.steps)
        self._deadline = _STEP_DEADLINE

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> ProgressSnapshot:
        return self._progress.snapshot(query.after_seq)

    async def _call(
        self,
        activity: str,
        arg: object,
        result_type: type[Result],
        start_to_close: timedelta = _DB_TIMEOUT,
    ) -> Result:
        result: Result = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=start_to_close,
            schedule_to_close_timeout=self._deadline,
            retry_policy=_RETRY,
            # A cancel waits for the step in flight to end, so its undo never races it.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if workflow.cancellation_reason() is not None:
            # Cancelled while the step ran and the step succeeded anyway: honour the cancel
            # now (its undo is already registered).
            raise asyncio.CancelledError
        return result

    async def _undo(self, activity: str, arg: object) -> UndoResult:
        return await run_undo(
            activity, arg, UndoResult, attempt_timeout=_DB_TIMEOUT, deadline=_UNDO_TIMEOUT
        )

    async def _roll_back(self, saga: Saga, step: str, err: BaseException) -> None:
        await saga.roll_back(self._progress, step, err)
        if is_cancellation(err):
            raise asyncio.CancelledError from err


@workflow.defn(name=USER_ONBOARDING_WORKFLOW)
class UserOnboardingWorkflow(_SagaWorkflow):
    steps: ClassVar[dict[str, int]] = {
        "validate": 10,
        "create_identity": 35,
        "create_membership": 60,
        "create_invitation": 80,
        "send_invitation": 95,
    }

    @workflow.run
    async def run(self, request: UserOnboardingRequest) -> UserOnboardingResult:
        saga = Saga()
        new_user_id = request.user_id or str(workflow.uuid4())
        invitation_id = str(workflow.uuid4())
        expires_at = workflow.now() + timedelta(days=INVITATION_DAYS)
        identity_in = IdentityInput(request.tenant_id, new_user_id, request.email, request.name)
        step = "validate"
        try:
            self._progress.started(step)
            tenant = await self._call(
                VALIDATE_ONBOARDING_ACTIVITY,
                OnboardingValidationInput(request.tenant_id, request.email, request.role),
                OnboardingValidation,
            )
            self._progress.finished(step)

            step = "create_identity"
            self._progress.started(step)
            saga.push(step, lambda: self._undo(DELETE_IDENTITY_ACTIVITY, identity_in))
            identity = await self._call(CREATE_IDENTITY_ACTIVITY, identity_in, IdentityResult)
            self._progress.count("identity_created", int(identity.created))
            self._progress.finished(step)

            step = "create_membership"
            self._progress.started(step)
            membership_ref = MembershipRef(request.tenant_id, identity.user_id)
            saga.push(step, lambda: self._undo(DELETE_MEMBERSHIP_ACTIVITY, membership_ref))
            membership = await self._call(
                CREATE_MEMBERSHIP_ACTIVITY,
                MembershipInput(
                    request.tenant_id, identity.user_id, request.role, request.requested_by
                ),
                MembershipResult,
            )
            self._progress.finished(step)

            step = "create_invitation"
            self._progress.started(step)
            invitation_ref = InvitationRef(request.tenant_id, invitation_id)
            saga.push(step, lambda: self._undo(DELETE_INVITATION_ACTIVITY, invitation_ref))
            await self._call(
                CREATE_INVITATION_ACTIVITY,
                InvitationInput(
                    invitation_id, request.tenant_id, identity.user_id, request.role, expires_at
                ),
                InvitationResult,
            )
            self._progress.finished(step)

            # Last, because a sent e-mail cannot be recalled. A refused address rolls the
            # whole onboarding back: a user who cannot be told is not onboarded.
            step = "send_invitation"
            self._progress.started(step)
            await self._call(
                SEND_NOTIFICATION_ACTIVITY,
                NotificationRequest(
                    key=f"invitation-{invitation_id}",
                    tenant_id=request.tenant_id,
                    to=request.email,
                    template=Template.INVITATION,
                    params={
                        "tenant_name": tenant.tenant_name,
                        "user_name": request.name,
                        "invited_by": request.requested_by,
                        "role": request.role,
                        "invitation_id": invitation_id,
                        "expires_at": expires_at.isoformat(timespec="minutes"),
                    },
                ),
                NotificationResult,
                start_to_close=_NOTIFY_TIMEOUT,
            )
            self._progress.finished(step)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            await self._roll_back(saga, step, err)
            raise

        self._progress.done()
        return UserOnboardingResult(
            user_id=identity.user_id,
            tenant_id=request.tenant_id,
            email=request.email,
            role=request.role,
            permissions=membership.permissions,
            invitation_id=invitation_id,
            invitation_expires_at=expires_at,
            created_identity=identity.created,
        )


@workflow.defn(name=USER_UPDATE_WORKFLOW)
class UserUpdateWorkflow(_SagaWorkflow):
    steps: ClassVar[dict[str, int]] = {
        "load_user": 10,
        "update_identity": 35,
        "change_role": 60,
        "remove_membership": 60,
        "revoke_sessions": 95,
    }

    @workflow.run
    async def run(self, request: UserUpdateRequest) -> UserUpdateResult:
        saga = Saga()
        ref = MembershipRef(request.tenant_id, request.user_id)
        step = "load_user"
        revoked = 0
        try:
            self._progress.started(step)
            before = await self._call(LOAD_USER_FOR_UPDATE_ACTIVITY, request, UserState)
            self._progress.finished(step)
            name, status, role = before.name, before.status, before.role
            permissions: list[str] = []

            if not request.remove and (request.name is not None or request.status is not None):
                step = "update_identity"
                self._progress.started(step)
                restore = IdentityUpdate(
                    request.tenant_id, request.user_id, before.name, before.status
                )
                saga.push(step, lambda: self._undo_identity(restore))
                await self._call(
                    UPDATE_IDENTITY_ACTIVITY,
                    IdentityUpdate(
                        request.tenant_id, request.user_id, request.name, request.status
                    ),
                    IdentityUpdateResult,
                )
                name, status = request.name or name, request.status or status
                self._progress.finished(step)

            if not request.remove and request.role is not None:
                step = "change_role"
                self._progress.started(step)
                previous_role = RoleChange(
                    request.tenant_id, request.user_id, before.role, keep_an_admin=False
                )
                saga.push(step, lambda: self._undo_role(previous_role))
                changed = await self._call(
                    CHANGE_ROLE_ACTIVITY,
                    RoleChange(request.tenant_id, request.user_id, request.role),
                    RoleChangeResult,
                )
                role, permissions = request.role, changed.permissions
                self._progress.finished(step)

            if request.remove:
                step = "remove_membership"
                self._progress.started(step)
                restore_membership = MembershipRestore(
                    request.tenant_id, request.user_id, before.role, before.active_here
                )
                saga.push(step, lambda: self._undo(RESTORE_MEMBERSHIP_ACTIVITY, restore_membership))
                await self._call(REMOVE_MEMBERSHIP_ACTIVITY, ref, MembershipRemovalResult)
                self._progress.finished(step)

            # Last, because a revocation cannot be undone. A token carries the role it was
            # issued with, so a new role, a disabled user or a removal ends the sessions.
            disabled = request.status == "disabled" and before.status != "disabled"
            if request.remove or disabled or (request.role not in (None, before.role)):
                step = "revoke_sessions"
                self._progress.started(step)
                result = await self._call(
                    REVOKE_SESSIONS_ACTIVITY,
                    SessionRevocation(request.tenant_id, request.user_id),
                    SessionRevocationResult,
                )
                revoked = result.revoked
                self._progress.count("sessions_revoked", revoked)
                self._progress.finished(step)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            await self._roll_back(saga, step, err)
            raise

        self._progress.done()
        return UserUpdateResult(
            user_id=request.user_id,
            tenant_id=request.tenant_id,
            removed=request.remove,
            name=name,
            status=status,
            role=None if request.remove else role,
            permissions=[] if request.remove else permissions,
            sessions_revoked=revoked,
        )

    async def _undo_identity(self, restore: IdentityUpdate) -> IdentityUpdateResult:
        return await run_undo(
            UPDATE_IDENTITY_ACTIVITY,
            restore,
            IdentityUpdateResult,
            attempt_timeout=_DB_TIMEOUT,
            deadline=_UNDO_TIMEOUT,
        )

    async def _undo_role(self, restore: RoleChange) -> RoleChangeResult:
        return await run_undo(
            CHANGE_ROLE_ACTIVITY,
            restore,
            RoleChangeResult,
            attempt_timeout=_DB_TIMEOUT,
            deadline=_UNDO_TIMEOUT,
        )


@workflow.defn(name=TENANT_SWITCH_WORKFLOW)
class TenantSwitchWorkflow(_SagaWorkflow):
    steps: ClassVar[dict[str, int]] = {
        "validate": 20,
        "load_tenant_context": 45,
        "set_active_tenant": 70,
        "issue_token": 95,
    }

    def __init__(self) -> None:
        super().__init__()
        self._deadline = _SWITCH_STEP_DEADLINE

    @workflow.run
    async def run(self, request: TenantSwitchRequest) -> TenantSwitchResult:
        saga = Saga()
        target = request.target_tenant_id
        step = "validate"
        try:
            self._progress.started(step)
            membership = await self._call(
                VALIDATE_SWITCH_ACTIVITY,
                SwitchValidationInput(request.user_id, target),
                SwitchValidation,
            )
            self._progress.finished(step)

            # Read-only (a cache entry is harmless to leave): nothing to undo.
            step = "load_tenant_context"
            self._progress.started(step)
            context = await self._call(
                LOAD_TENANT_CONTEXT_ACTIVITY, TenantContextInput(target), TenantContext
            )
            self._progress.finished(step)

            step = "set_active_tenant"
            self._progress.started(step)
            restore = ActiveTenantRestore(request.user_id, target, membership.previous_tenant_id)
            saga.push(step, lambda: self._undo(RESTORE_ACTIVE_TENANT_ACTIVITY, restore))
            await self._call(
                SET_ACTIVE_TENANT_ACTIVITY,
                ActiveTenantChange(request.user_id, target),
                ActiveTenantResult,
            )
            self._progress.finished(step)

            step = "issue_token"
            self._progress.started(step)
            session_ref = SessionRef(target, request.session_id)
            saga.push(step, lambda: self._undo(DELETE_SESSION_ACTIVITY, session_ref))
            token = await self._call(
                ISSUE_SESSION_TOKEN_ACTIVITY,
                SessionTokenInput(
                    request.session_id, request.user_id, target, membership.role, request.email
                ),
                SessionToken,
            )
            self._progress.finished(step)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            await self._roll_back(saga, step, err)
            raise

        self._progress.done()
        return TenantSwitchResult(
            user_id=request.user_id,
            tenant_id=target,
            slug=context.slug,
            display_name=context.display_name,
            previous_tenant_id=membership.previous_tenant_id,
            role=membership.role,
            permissions=_permissions_of(context, membership.role),
            token=token.token,
            session_id=token.session_id,
            expires_at=token.expires_at,
            quotas=context.quotas,
            features=context.features,
            settings=context.settings,
            context_source=context.source,
        )


def _permissions_of(context: TenantContext, role: str) -> list[str]:
    if role in context.permissions:
        return list(context.permissions[role])
    # A platform admin (platform tenant only) holds every permission any role has.
    return sorted({p for granted in context.permissions.values() for p in granted})
