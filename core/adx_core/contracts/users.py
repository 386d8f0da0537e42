"""User workflow contracts: onboarding, updates and removal, and switching tenants.

Imported inside the workflow sandbox: standard library and ``temporalio`` only.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TASK_QUEUE = "users"
USER_ONBOARDING_WORKFLOW = "user_onboarding_workflow"
USER_UPDATE_WORKFLOW = "user_update_workflow"
TENANT_SWITCH_WORKFLOW = "tenant_switch_workflow"

# The roles a tenant can give its users (platform-admin is only given by operators).
TENANT_USER_ROLES = ("tenant-admin", "member", "viewer")
ADMIN_ROLE = "tenant-admin"
PLATFORM_ADMIN_ROLE = "platform-admin"


# A disabled identity keeps its memberships but its sessions in the tenant are revoked.
USER_STATUSES = ("active", "disabled")


INVITATION_DAYS = 7

# ApplicationError types (all non-retryable) that callers map to HTTP answers.
ALREADY_MEMBER = "AlreadyMember"  # 409
USER_NOT_FOUND = "UserNotFound"  # 404: not a member of the tenant the request runs in
TENANT_NOT_FOUND = "TenantNotFound"  # 404
NOT_A_MEMBER = "NotAMember"  # 404: the caller is not in the target tenant
ACCESS_DENIED = "AccessDenied"  # 403: a member whose role lacks tenant.access
TENANT_INACTIVE = "TenantInactive"  # 409: the tenant is not active (suspended, provisioning)
LAST_TENANT_ADMIN = "LastTenantAdmin"  # 409: a tenant must keep one tenant-admin
USER_QUOTA_EXCEEDED = "UserQuotaExceeded"  # 409: the plan's user quota is reached
INVALID_USER_REQUEST = "InvalidUserRequest"  # 422
NON_RETRYABLE = (
    ALREADY_MEMBER,
    USER_NOT_FOUND,
    TENANT_NOT_FOUND,
    NOT_A_MEMBER,
    ACCESS_DENIED,
    TENANT_INACTIVE,
    LAST_TENANT_ADMIN,
    USER_QUOTA_EXCEEDED,
    INVALID_USER_REQUEST,
)

# Activities of user_onboarding_workflow.
VALIDATE_ONBOARDING_ACTIVITY = "validate_onboarding_activity"
CREATE_IDENTITY_ACTIVITY = "create_user_identity_activity"
DELETE_IDENTITY_ACTIVITY = "delete_user_identity_activity"
CREATE_MEMBERSHIP_ACTIVITY = "create_membership_activity"
DELETE_MEMBERSHIP_ACTIVITY = "delete_membership_activity"
CREATE_INVITATION_ACTIVITY = "create_invitation_activity"
DELETE_INVITATION_ACTIVITY = "delete_invitation_activity"
# Activities of user_update_workflow.
LOAD_USER_FOR_UPDATE_ACTIVITY = "load_user_for_update_activity"
UPDATE_IDENTITY_ACTIVITY = "update_user_identity_activity"
CHANGE_ROLE_ACTIVITY = "change_membership_role_activity"
REMOVE_MEMBERSHIP_ACTIVITY = "remove_membership_activity"
RESTORE_MEMBERSHIP_ACTIVITY = "restore_membership_activity"
REVOKE_SESSIONS_ACTIVITY = "revoke_user_sessions_activity"
# Activities of tenant_switch_workflow.
VALIDATE_SWITCH_ACTIVITY = "validate_tenant_switch_activity"
LOAD_TENANT_CONTEXT_ACTIVITY = "load_tenant_context_activity"
SET_ACTIVE_TENANT_ACTIVITY = "set_active_tenant_activity"
RESTORE_ACTIVE_TENANT_ACTIVITY = "restore_active_tenant_activity"
ISSUE_SESSION_TOKEN_ACTIVITY = "issue_session_token_activity"  # noqa: S105 (a name)
DELETE_SESSION_ACTIVITY = "delete_session_activity"


def _hex(value: str) -> str:
    return uuid.UUID(value).hex


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def onboarding_workflow_id(tenant_id: str, email: str, idempotency_key: str | None = None) -> str:
    """One onboarding per tenant and e-mail at a time (a concurrent second one conflicts), or
    one per Idempotency-Key, so that a retried POST joins the first instead of onboarding
    twice. Digests keep the id short and free of personal data."""
    key = f"key:{idempotency_key}" if idempotency_key is not None else f"email:{email.lower()}"
    return f"user-onboarding-{_hex(tenant_id)}-{_digest(key)}"


def update_workflow_id(tenant_id: str, user_id: str) -> str:
    # One change to a user in a tenant at a time: undos restore values read at the start,
    # which a concurrent change would otherwise overwrite.
    return f"user-update-{_hex(tenant_id)}-{_hex(user_id)}"


def switch_workflow_id(switch_id: str) -> str:
    # Unguessable: the result carries a token, and operations are readable tenant-wide by id.
    return f"tenant-switch-{_hex(switch_id)}"


@dataclass(frozen=True)
class UndoResult:
    undone: bool


# user_onboarding_workflow


@dataclass(frozen=True)
class UserOnboardingRequest:
    tenant_id: str
    email: str
    name: str
    role: str
    requested_by: str
    # Used for a new identity; an existing identity with this e-mail keeps its own id.
    user_id: str | None = None


@dataclass(frozen=True)
class UserOnboardingResult:
    user_id: str
    tenant_id: str
    email: str
    role: str
    permissions: list[str]
    invitation_id: str
    invitation_expires_at: datetime
    created_identity: bool


@dataclass(frozen=True)
class OnboardingValidationInput:
    tenant_id: str
    email: str
    role: str


@dataclass(frozen=True)
class OnboardingValidation:
    tenant_slug: str
    tenant_name: str
    existing_user_id: str | None


@dataclass(frozen=True)
class IdentityInput:
    tenant_id: str
    user_id: str
    email: str
    name: str


@dataclass(frozen=True)
class IdentityResult:
    user_id: str
    created: bool


@dataclass(frozen=True)
class MembershipInput:
    tenant_id: str
    user_id: str
    role: str
    requested_by: str


@dataclass(frozen=True)
class MembershipResult:
    created: bool
    permissions: list[str]


@dataclass(frozen=True)
class MembershipRef:
    tenant_id: str
    user_id: str


@dataclass(frozen=True)
class InvitationInput:
    invitation_id: str
    tenant_id: str
    user_id: str
    role: str
    expires_at: datetime


@dataclass(frozen=True)
class InvitationResult:
    created: bool


@dataclass(frozen=True)
class InvitationRef:
    tenant_id: str
    invitation_id: str


# user_update_workflow


@dataclass(frozen=True)
class UserUpdateRequest:
    tenant_id: str
    user_id: str
    requested_by: str
    name: str | None = None
    status: str | None = None
    role: str | None = None
    # Remove the user from the tenant; the other fields are then ignored.
    remove: bool = False


@dataclass(frozen=True)
class UserUpdateResult:
    user_id: str
    tenant_id: str
    removed: bool
    name: str
    status: str
    role: str | None
    permissions: list[str]
    sessions_revoked: int


@dataclass(frozen=True)
class UserState:
    """The user as the update found them: what the undos restore."""

    user_id: str
    tenant_id: str
    email: str
    name: str
    status: str
    role: str
    active_here: bool


@dataclass(frozen=True)
class IdentityUpdate:
    tenant_id: str
    user_id: str
    name: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class IdentityUpdateResult:
    changed: bool


@dataclass(frozen=True)
class RoleChange:
    tenant_id: str
    user_id: str
    role: str
    # Refuse to leave the tenant without a tenant-admin; an undo restoring a role skips it.
    keep_an_admin: bool = True


@dataclass(frozen=True)
class RoleChangeResult:
    changed: bool
    permissions: list[str]


@dataclass(frozen=True)
class MembershipRemovalResult:
    removed: bool


@dataclass(frozen=True)
class MembershipRestore:
    tenant_id: str
    user_id: str
    role: str
    # Point the user's active tenant back here (it was cleared by the removal).
    active_here: bool


@dataclass(frozen=True)
class SessionRevocation:
    tenant_id: str
    user_id: str


@dataclass(frozen=True)
class SessionRevocationResult:
    revoked: int


# tenant_switch_workflow


@dataclass(frozen=True)
class TenantSwitchRequest:
    user_id: str
    target_tenant_id: str
    # Generated by the caller; the session created for the new token.
    session_id: str
    email: str | None = None


@dataclass(frozen=True)
class TenantSwitchResult:
    user_id: str
    tenant_id: str
    slug: str
    display_name: str
    previous_tenant_id: str | None
    role: str
    permissions: list[str]
    token: str
    session_id: str
    expires_at: datetime
    quotas: dict[str, int]
    features: list[str]
    settings: dict[str, Any]
    # "cache" or "database": where the tenant context came from.
    context_source: str


@dataclass(frozen=True)
class SwitchValidationInput:
    user_id: str
    target_tenant_id: str


@dataclass(frozen=True)
class SwitchValidation:
    role: str
    previous_tenant_id: str | None


@dataclass(frozen=True)
class TenantContextInput:
    tenant_id: str


@dataclass(frozen=True)
class TenantContext:
    """What a session in a tenant needs to know about it; cached, so JSON-shaped."""

    tenant_id: str
    slug: str
    display_name: str
    plan: str
    status: str
    settings: dict[str, Any] = field(default_factory=dict)
    # role -> permissions, from tenant_role_permissions
    permissions: dict[str, list[str]] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    source: str = "database"


@dataclass(frozen=True)
class ActiveTenantChange:
    user_id: str
    tenant_id: str


@dataclass(frozen=True)
class ActiveTenantRestore:
    user_id: str
    # The tenant the switch set: the value is restored only while it still holds, so the
    # undo of a failed switch never overwrites a later switch.
    switched_to: str
    previous_tenant_id: str | None


@dataclass(frozen=True)
class ActiveTenantResult:
    changed: bool


@dataclass(frozen=True)
class SessionTokenInput:
    session_id: str
    user_id: str
    tenant_id: str
    role: str
    email: str | None = None


@dataclass(frozen=True)
class SessionToken:
    session_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class SessionRef:
    tenant_id: str
    session_id: str
