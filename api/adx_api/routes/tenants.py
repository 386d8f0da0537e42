"""Tenant lifecycle: ``POST /v1/tenants`` starts tenant_provisioning_workflow and
``DELETE /v1/tenants/{id}`` starts tenant_deprovisioning_workflow; platform admins only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from adx_api.keys import SESSIONS, SETTINGS, TEMPORAL, claims_of, context_of
from adx_api.openapi_parts import PREFER, UUID_ID_PARAM, workflow_post
from adx_api.operations import Operations, search_attributes
from adx_api.problems import ProblemError
from adx_api.routes.common import (
    is_platform_admin,
    operation_response,
    read_json,
    require_permission,
    start_operation,
    tenant_in_reach,
)
from adx_core.auth import Claims
from adx_core.contracts.permissions import TENANTS_CREATE, TENANTS_DELETE
from adx_core.contracts.plans import QuotaOverrideError, QuotaOverrides, validate_overrides
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
    TASK_QUEUE,
    TENANT_DEPROVISIONING_WORKFLOW,
    TENANT_PROVISIONING_WORKFLOW,
    Plan,
    TenantAdmin,
    TenantCreationRequest,
    TenantDeprovisioningRequest,
    deprovisioning_workflow_id,
    provisioning_workflow_id,
)
from adx_core.db.engine import tenant_session
from adx_core.db.models import Tenant
from adx_core.db.repositories import tenant_id_for_slug
from adx_core.metrics import WORKFLOWS_STARTED
from adx_core.settings import Settings

Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$", min_length=3, max_length=40)
]
# Printable text without control characters; trimmed.
Text200 = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        max_length=320,
        pattern=r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
    ),
]

RESERVED_SLUGS = frozenset({"platform", "admin", "api", "system", "www", "root"})


class AdminIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    email: Email
    name: Text200


Quota = Annotated[int, Field(strict=True, ge=1, le=2**53)]


class QuotasIn(BaseModel):
    """Overrides of the plan's quotas; each at most ten times the plan's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    storage_bytes: Quota | None = None
    files: Quota | None = None
    users: Quota | None = None
    db_rows: Quota | None = None
    file_bytes: Quota | None = None


class CreateTenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    slug: Slug
    display_name: Text200
    plan: Plan = Field(default=Plan.FREE)
    admin: AdminIn
    quotas: QuotasIn | None = None

    def overrides(self) -> QuotaOverrides | None:
        return QuotaOverrides(**self.quotas.model_dump()) if self.quotas else None


async def start_provisioning(
    client: Client,
    settings: Settings,
    body: CreateTenantIn,
    claims: Claims,
    correlation_id: str,
) -> WorkflowHandle[Any, Any]:
    """Start tenant_provisioning_workflow for a validated request, with a fresh tenant id."""
    tenant_id = str(uuid.uuid4())
    return await client.start_workflow(
        TENANT_PROVISIONING_WORKFLOW,
        TenantCreationRequest(
            tenant_id=tenant_id,
            slug=body.slug,
            display_name=body.display_name,
            plan=body.plan,
            admin=TenantAdmin(email=body.admin.email, name=body.admin.name),
            requested_by=claims.user_id,
            quotas=body.overrides(),
            monitoring_interval_seconds=settings.monitoring_interval_seconds,
        ),
        id=provisioning_workflow_id(tenant_id),
        task_queue=settings.task_queue(TASK_QUEUE),
        search_attributes=search_attributes(claims.tenant_id, correlation_id),
        memo={"subject_tenant_id": tenant_id, "requested_by": claims.user_id},
    )


async def create_tenant(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_permission(claims, TENANTS_CREATE)
    body = await read_json(request, CreateTenantIn)
    if body.slug in RESERVED_SLUGS:
        raise ProblemError(409, "conflict", f"the slug {body.slug!r} is reserved")
    overrides = body.overrides()
    if overrides is not None:
        try:
            validate_overrides(body.plan, overrides)
        except QuotaOverrideError as exc:
            raise ProblemError(
                422,
                "validation",
                "the body has invalid fields",
                errors=[{"pointer": "/quotas", "detail": str(exc)}],
            ) from None
    async with request.app[SESSIONS]() as session:
        if await tenant_id_for_slug(session, body.slug) is not None:
            raise ProblemError(409, "conflict", f"the slug {body.slug!r} is taken")

    client = request.app[TEMPORAL]
    try:
        handle = await start_provisioning(
            client, request.app[SETTINGS], body, claims, context_of(request).correlation_id
        )
    except WorkflowAlreadyStartedError:  # a fresh uuid4 makes this a bug, not a user error
        raise ProblemError(409, "conflict", "the operation already exists") from None
    WORKFLOWS_STARTED.labels(TENANT_PROVISIONING_WORKFLOW).inc()
    return await operation_response(
        request, Operations(client), handle, TENANT_PROVISIONING_WORKFLOW
    )


async def delete_tenant(request: web.Request) -> web.Response:
    """Remove a tenant and its data (optionally exporting it first, ``?export=true``).
    One removal per tenant: a repeat while it runs answers with the same operation."""
    claims = claims_of(request)
    tenant_id = tenant_in_reach(claims, request.match_info["id"])
    require_permission(claims, TENANTS_DELETE)
    if not is_platform_admin(claims):  # and only from the platform tenant
        raise ProblemError(403, "forbidden", "only platform admins remove tenants")
    if str(tenant_id) == PLATFORM_TENANT_ID:
        raise ProblemError(409, "conflict", "the platform tenant cannot be removed")
    export = request.query.get("export", "false")
    if export not in ("true", "false"):
        raise ProblemError(400, "bad-query", "export must be true or false")
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        if await session.get(Tenant, tenant_id) is None:
            raise ProblemError(404, "not-found", "no such tenant")
    return await start_operation(
        request,
        workflow=TENANT_DEPROVISIONING_WORKFLOW,
        arg=TenantDeprovisioningRequest(
            tenant_id=str(tenant_id), requested_by=claims.user_id, export=export == "true"
        ),
        workflow_id=deprovisioning_workflow_id(str(tenant_id)),
        domain=TASK_QUEUE,
        subject_tenant_id=str(tenant_id),
        join_running=True,
    )


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/tenants": {
        "post": workflow_post(
            "Provision a tenant (tenant_provisioning_workflow); platform admins",
            "createTenant",
            "CreateTenantIn",
            400,
            401,
            403,
            409,
            413,
            415,
            422,
        ),
    },
    "/v1/tenants/{id}": {
        "delete": {
            **workflow_post(
                "Remove a tenant and its data (tenant_deprovisioning_workflow); platform admins",
                "deleteTenant",
                None,
                400,
                401,
                403,
                404,
                409,
            ),
            "parameters": [
                PREFER,
                UUID_ID_PARAM,
                {
                    "name": "export",
                    "in": "query",
                    "description": "Archive the tenant's rows and objects under exports/ first",
                    "schema": {"enum": ["true", "false"]},
                },
            ],
        }
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (CreateTenantIn,)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tenants", create_tenant)
    app.router.add_delete("/v1/tenants/{id}", delete_tenant)
