"""Users: reads answered from the caller's tenant under RLS; changes run as workflows.

- ``GET /v1/users/{id}``, ``GET /v1/me``: direct reads.
- ``POST /v1/users`` (user_onboarding_workflow), ``PATCH`` and ``DELETE /v1/users/{id}``
  (user_update_workflow): 202 with the operation, or 200 with ``Prefer: wait``.
- ``POST /v1/me/active-tenant`` (tenant_switch_workflow): synchronous by default; it
  answers 200 with the new token, or 202 with the operation if the switch takes too long.

Everything acts in the token's tenant: another tenant's user is a 404, like a missing one.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, model_validator
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError

from adx_api.keys import SESSIONS, SETTINGS, TEMPORAL, claims_of, context_of
from adx_api.openapi_parts import (
    OPERATION_STARTED,
    PREFER,
    UUID_ID_PARAM,
    WORKFLOW_EXTENSION,
    errors,
    json_body,
    json_response,
    workflow_post,
)
from adx_api.operations import Operation, Operations, search_attributes
from adx_api.problems import ProblemError
from adx_api.routes.common import (
    existing_operation,
    idempotency_key,
    parse_uuid,
    prefer_wait,
    read_json,
    require_permission,
    start_operation,
)
from adx_api.routes.tenants import Email, Slug, Text200
from adx_core.auth import Claims
from adx_core.contracts.permissions import USERS_MANAGE
from adx_core.contracts.users import (
    ACCESS_DENIED,
    ADMIN_ROLE,
    LAST_TENANT_ADMIN,
    NOT_A_MEMBER,
    TASK_QUEUE,
    TENANT_INACTIVE,
    TENANT_NOT_FOUND,
    TENANT_SWITCH_WORKFLOW,
    USER_ONBOARDING_WORKFLOW,
    USER_UPDATE_WORKFLOW,
    TenantSwitchRequest,
    TenantSwitchResult,
    UserOnboardingRequest,
    UserUpdateRequest,
    onboarding_workflow_id,
    switch_workflow_id,
    update_workflow_id,
)
from adx_core.db.engine import tenant_session
from adx_core.db.models import Membership, TenantRolePermission, User
from adx_core.db.repositories import tenant_id_for_slug
from adx_core.metrics import WORKFLOWS_STARTED

TenantRole = Literal["tenant-admin", "member", "viewer"]
UserStatusIn = Literal["active", "disabled"]
# A switch waits this long for its workflow by default: the caller expects the new token
# in the answer. ``Prefer: wait=N`` changes it.
SWITCH_WAIT_SECONDS = 10
# Printable ASCII without spaces: keys end up (digested) in workflow ids and logs.


class OnboardUserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    email: Email
    name: Text200
    role: TenantRole = "member"


class UpdateUserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Text200 | None = None
    role: TenantRole | None = None
    status: UserStatusIn | None = None

    @model_validator(mode="after")
    def _something(self) -> UpdateUserIn:
        if self.name is None and self.role is None and self.status is None:
            raise ValueError("give at least one of name, role, status")
        return self


class SwitchTenantIn(BaseModel):
    """The target tenant, by id or by slug."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant_id: uuid.UUID | None = None
    tenant: Slug | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SwitchTenantIn:
        if (self.tenant_id is None) == (self.tenant is None):
            raise ValueError("give exactly one of tenant_id, tenant")
        return self


def _caller_user_id(claims: Claims) -> uuid.UUID:
    try:
        return uuid.UUID(claims.user_id)
    except ValueError:
        raise ProblemError(403, "forbidden", "this token names no user identity") from None


async def _permissions(session: AsyncSession, role: str) -> list[str]:
    result = await session.scalars(
        select(TenantRolePermission.permission)
        .where(TenantRolePermission.role == role)
        .order_by(TenantRolePermission.permission)
    )
    return list(result.all())


async def _member(
    request: web.Request, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> dict[str, Any] | None:
    """The user as a member of ``tenant_id``, read under that tenant's RLS scope."""
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        row = (
            await session.execute(
                select(User, Membership.role)
                .join(Membership, Membership.user_id == User.id)
                .where(User.id == user_id, Membership.tenant_id == tenant_id)
            )
        ).one_or_none()
        if row is None:
            return None
        user, role = row
        return {
            "id": str(user.id),
            "email": user.email,
            "name": user.name,
            "status": user.status,
            "tenant_id": str(tenant_id),
            "role": role,
            "permissions": await _permissions(session, role),
            "active_here": user.active_tenant_id == tenant_id,
            "created_at": user.created_at.isoformat(),
        }


async def get_user(request: web.Request) -> web.Response:
    claims = claims_of(request)
    user_id = parse_uuid(request.match_info["id"], "user")
    member = await _member(request, uuid.UUID(claims.tenant_id), user_id)
    if member is None:
        raise ProblemError(404, "not-found", "no such user")
    return web.json_response(member)


async def get_me(request: web.Request) -> web.Response:
    claims = claims_of(request)
    body: dict[str, Any] = {
        "user_id": claims.user_id,
        "tenant_id": claims.tenant_id,
        "roles": [role.value for role in claims.roles],
        "session_id": claims.session_id,
        "email": claims.email,
        "name": None,
        "status": None,
        "active_tenant_id": None,
        "memberships": [],
    }
    try:
        user_id = uuid.UUID(claims.user_id)
    except ValueError:
        return web.json_response(body)  # a development token naming no identity
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        user = await session.get(User, user_id)
        rows = await session.execute(
            text(
                "SELECT tenant_id, slug, display_name, status, role "
                "FROM adx_memberships_of_user(:user)"
            ),
            {"user": user_id},
        )
        memberships = [
            {
                "tenant_id": str(row.tenant_id),
                "slug": row.slug,
                "display_name": row.display_name,
                "status": row.status,
                "role": row.role,
            }
            for row in rows
        ]
    if user is not None:
        active = user.active_tenant_id
        body.update(
            email=user.email,
            name=user.name,
            status=user.status,
            active_tenant_id=str(active) if active else None,
        )
    body["memberships"] = memberships
    return web.json_response(body)


async def create_user(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_permission(claims, USERS_MANAGE)
    key = idempotency_key(request)
    body = await read_json(request, OnboardUserIn)
    tenant_id = claims.tenant_id
    workflow_id = onboarding_workflow_id(tenant_id, body.email, key)
    if key is not None and (existing := await existing_operation(request, workflow_id)):
        return existing
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        existing = await session.scalar(
            text("SELECT adx_user_id_for_email(:email)"), {"email": body.email}
        )
        already = (
            await session.get(Membership, (uuid.UUID(tenant_id), existing))
            if isinstance(existing, uuid.UUID)
            else None
        )
    if already is not None:
        raise ProblemError(409, "conflict", "the user is already a member of this tenant")
    return await start_operation(
        request,
        workflow=USER_ONBOARDING_WORKFLOW,
        arg=UserOnboardingRequest(
            tenant_id=tenant_id,
            email=body.email,
            name=body.name,
            role=body.role,
            requested_by=claims.user_id,
            user_id=str(uuid.uuid4()),
        ),
        workflow_id=workflow_id,
        domain=TASK_QUEUE,
        subject_tenant_id=tenant_id,
        # A retry with the same key joins the running onboarding.
        join_running=key is not None,
        conflict_detail="this user is already being onboarded",
    )


async def _admin_count(request: web.Request, tenant_id: uuid.UUID) -> int:
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        count = await session.scalar(
            select(func.count()).select_from(Membership).where(Membership.role == ADMIN_ROLE)
        )
    return int(count or 0)


async def _start_update(request: web.Request, change: UserUpdateRequest) -> web.Response:
    tenant_id = uuid.UUID(change.tenant_id)
    member = await _member(request, tenant_id, uuid.UUID(change.user_id))
    if member is None:
        raise ProblemError(404, "not-found", "no such user")
    demoted = change.remove or change.role not in (None, ADMIN_ROLE)
    # An early, clear answer; the workflow re-checks under row locks, which settles races.
    if member["role"] == ADMIN_ROLE and demoted and await _admin_count(request, tenant_id) <= 1:
        raise ProblemError(
            409,
            "conflict",
            "the tenant's last tenant-admin cannot be removed or demoted",
            code=LAST_TENANT_ADMIN,
        )
    return await start_operation(
        request,
        workflow=USER_UPDATE_WORKFLOW,
        arg=change,
        workflow_id=update_workflow_id(change.tenant_id, change.user_id),
        domain=TASK_QUEUE,
        subject_tenant_id=change.tenant_id,
        conflict_detail="another change to this user is running",
    )


async def update_user(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_permission(claims, USERS_MANAGE)
    user_id = parse_uuid(request.match_info["id"], "user")
    body = await read_json(request, UpdateUserIn)
    change = UserUpdateRequest(
        tenant_id=claims.tenant_id,
        user_id=str(user_id),
        requested_by=claims.user_id,
        name=body.name,
        status=body.status,
        role=body.role,
    )
    return await _start_update(request, change)


async def remove_user(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_permission(claims, USERS_MANAGE)
    user_id = parse_uuid(request.match_info["id"], "user")
    change = UserUpdateRequest(
        tenant_id=claims.tenant_id, user_id=str(user_id), requested_by=claims.user_id, remove=True
    )
    return await _start_update(request, change)


# Why a switch was refused, as the HTTP answer: a tenant the caller is not in is
# indistinguishable from one that does not exist.
_SWITCH_REFUSALS = {
    NOT_A_MEMBER: (404, "not-found"),
    TENANT_NOT_FOUND: (404, "not-found"),
    ACCESS_DENIED: (403, "forbidden"),
    TENANT_INACTIVE: (409, "conflict"),
}


def _switch_refusal(failure: WorkflowFailureError) -> ProblemError:
    root: BaseException | None = failure.cause
    while isinstance(root, FailureError) and not isinstance(root, ApplicationError):
        root = root.cause
    if isinstance(root, ApplicationError) and root.type in _SWITCH_REFUSALS:
        status, kind = _SWITCH_REFUSALS[root.type]
        return ProblemError(status, kind, root.message)
    return ProblemError(
        500,
        "switch-failed",
        "the switch failed and was rolled back; the active tenant is unchanged",
        title="The tenant switch failed",
    )


def _switch_json(result: TenantSwitchResult, operation_id: str) -> dict[str, Any]:
    return {
        "tenant_id": result.tenant_id,
        "slug": result.slug,
        "display_name": result.display_name,
        "previous_tenant_id": result.previous_tenant_id,
        "role": result.role,
        "permissions": result.permissions,
        "token": result.token,
        "token_type": "Bearer",
        "session_id": result.session_id,
        "expires_at": result.expires_at.isoformat(),
        "quotas": result.quotas,
        "features": result.features,
        "settings": result.settings,
        "operation": f"/v1/operations/{operation_id}",
    }


async def switch_tenant(request: web.Request) -> web.Response:
    claims = claims_of(request)
    user_id = _caller_user_id(claims)
    body = await read_json(request, SwitchTenantIn)
    target = body.tenant_id
    if target is None:
        assert body.tenant is not None  # the model requires one of the two
        async with request.app[SESSIONS]() as session:
            target = await tenant_id_for_slug(session, body.tenant)
        if target is None:
            raise ProblemError(404, "not-found", "no such tenant")
    client = request.app[TEMPORAL]
    switch_id = str(uuid.uuid4())
    workflow_id = switch_workflow_id(switch_id)
    try:
        handle: WorkflowHandle[Any, TenantSwitchResult] = await client.start_workflow(
            TENANT_SWITCH_WORKFLOW,
            TenantSwitchRequest(
                user_id=str(user_id),
                target_tenant_id=str(target),
                session_id=str(uuid.uuid4()),
                email=claims.email,
            ),
            id=workflow_id,
            result_type=TenantSwitchResult,
            task_queue=request.app[SETTINGS].task_queue(TASK_QUEUE),
            search_attributes=search_attributes(
                claims.tenant_id, context_of(request).correlation_id
            ),
            memo={"subject_tenant_id": str(target), "requested_by": claims.user_id},
        )
    except WorkflowAlreadyStartedError:  # a fresh uuid4: a bug, not a user error
        raise ProblemError(409, "conflict", "the operation already exists") from None
    WORKFLOWS_STARTED.labels(TENANT_SWITCH_WORKFLOW).inc()
    wait = prefer_wait(request)
    try:
        result = await asyncio.wait_for(
            handle.result(), wait if wait is not None else SWITCH_WAIT_SECONDS
        )
    except TimeoutError:
        description = await handle.describe()
        operation = await Operations(client).build(handle, description)
        if operation.status == "pending":
            operation = Operation.started(workflow_id, TENANT_SWITCH_WORKFLOW, operation.created_at)
        return web.json_response(
            operation.to_json(), status=202, headers={"Location": f"/v1/operations/{workflow_id}"}
        )
    except WorkflowFailureError as failure:
        raise _switch_refusal(failure) from None
    return web.json_response(
        _switch_json(result, workflow_id), headers={"Cache-Control": "no-store"}
    )


_USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "email", "name", "status", "tenant_id", "role", "permissions"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "email": {"type": "string"},
        "name": {"type": "string"},
        "status": {"enum": ["active", "disabled"]},
        "tenant_id": {"type": "string", "format": "uuid"},
        "role": {"enum": ["tenant-admin", "member", "viewer", "platform-admin"]},
        "permissions": {"type": "array", "items": {"type": "string"}},
        "active_here": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_ME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user_id", "tenant_id", "roles", "memberships"],
    "properties": {
        "user_id": {"type": "string"},
        "tenant_id": {"type": "string", "format": "uuid"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "session_id": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "active_tenant_id": {"type": ["string", "null"]},
        "memberships": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "tenant_id": {"type": "string", "format": "uuid"},
                    "slug": {"type": "string"},
                    "display_name": {"type": "string"},
                    "status": {"type": "string"},
                    "role": {"type": "string"},
                },
            },
        },
    },
}
_SWITCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tenant_id", "role", "permissions", "token", "expires_at"],
    "properties": {
        "tenant_id": {"type": "string", "format": "uuid"},
        "slug": {"type": "string"},
        "display_name": {"type": "string"},
        "previous_tenant_id": {"type": ["string", "null"]},
        "role": {"type": "string"},
        "permissions": {"type": "array", "items": {"type": "string"}},
        "token": {"type": "string"},
        "token_type": {"const": "Bearer"},
        "session_id": {"type": "string", "format": "uuid"},
        "expires_at": {"type": "string", "format": "date-time"},
        "quotas": {"type": "object"},
        "features": {"type": "array", "items": {"type": "string"}},
        "settings": {"type": "object"},
        "operation": {"type": "string"},
    },
}
_IDEMPOTENCY_PARAM: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "A retried POST with the same key returns the first request's operation",
    "schema": {"type": "string", "maxLength": 200},
}


def _create_user_spec() -> dict[str, Any]:
    spec = workflow_post(
        "Onboard a user into the caller's tenant (user_onboarding_workflow); tenant admins",
        "createUser",
        "OnboardUserIn",
        400,
        401,
        403,
        409,
        413,
        415,
        422,
    )
    spec["parameters"] = [*spec["parameters"], _IDEMPOTENCY_PARAM]
    return spec


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/users": {"post": _create_user_spec()},
    "/v1/users/{id}": {
        "get": {
            "summary": "A user of the caller's tenant, with their role and permissions",
            "operationId": "getUser",
            "parameters": [UUID_ID_PARAM],
            "responses": {"200": json_response("The user", _USER_SCHEMA), **errors(401, 404)},
        },
        "patch": {
            **workflow_post(
                "Change a user's name, status or role (user_update_workflow); tenant admins",
                "updateUser",
                "UpdateUserIn",
                400,
                401,
                403,
                404,
                409,
                413,
                415,
                422,
            ),
            "parameters": [UUID_ID_PARAM, PREFER],
        },
        "delete": {
            **workflow_post(
                "Remove a user from the caller's tenant: membership, permissions and sessions "
                "(user_update_workflow); tenant admins",
                "removeUser",
                None,
                401,
                403,
                404,
                409,
            ),
            "parameters": [UUID_ID_PARAM, PREFER],
        },
    },
    "/v1/me": {
        "get": {
            "summary": "The caller: identity, the token's tenant, active tenant, memberships",
            "operationId": "getMe",
            "responses": {"200": json_response("The caller", _ME_SCHEMA), **errors(401)},
        }
    },
    "/v1/me/active-tenant": {
        "post": {
            "summary": "Switch the active tenant (tenant_switch_workflow) and get a token for "
            "it; waits up to 10 s (or Prefer: wait=N), else answers 202 with the operation",
            "operationId": "switchTenant",
            WORKFLOW_EXTENSION: TENANT_SWITCH_WORKFLOW,
            "parameters": [PREFER],
            "requestBody": json_body("SwitchTenantIn"),
            "responses": {
                "200": json_response("The new tenant and its token", _SWITCH_SCHEMA),
                "202": OPERATION_STARTED,
                **errors(400, 401, 403, 404, 409, 413, 415, 422, 500),
            },
        }
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (OnboardUserIn, UpdateUserIn, SwitchTenantIn)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/users", create_user)
    app.router.add_get("/v1/users/{id}", get_user)
    app.router.add_patch("/v1/users/{id}", update_user)
    app.router.add_delete("/v1/users/{id}", remove_user)
    app.router.add_get("/v1/me", get_me)
    app.router.add_post("/v1/me/active-tenant", switch_tenant)
