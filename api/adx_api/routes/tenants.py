"""``POST /v1/tenants`` starts tenant_provisioning_workflow; platform admins only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from adx_api.keys import SESSIONS, SETTINGS, TEMPORAL, claims_of, context_of
from adx_api.openapi_parts import workflow_post
from adx_api.operations import Operations, search_attributes
from adx_api.problems import ProblemError
from adx_api.routes.common import operation_response, read_json, require_role
from adx_core.auth import Claims, Role
from adx_core.contracts.tenants import (
    TASK_QUEUE,
    TENANT_PROVISIONING_WORKFLOW,
    Plan,
    TenantAdmin,
    TenantCreationRequest,
)
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


class CreateTenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    slug: Slug
    display_name: Text200
    plan: Plan = Field(default=Plan.FREE)
    admin: AdminIn


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
        ),
        id=f"tenant-provisioning-{tenant_id}",
        task_queue=settings.task_queue(TASK_QUEUE),
        search_attributes=search_attributes(claims.tenant_id, correlation_id),
        memo={"subject_tenant_id": tenant_id, "requested_by": claims.user_id},
    )


async def create_tenant(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, Role.PLATFORM_ADMIN)
    body = await read_json(request, CreateTenantIn)
    if body.slug in RESERVED_SLUGS:
        raise ProblemError(409, "conflict", f"the slug {body.slug!r} is reserved")
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
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (CreateTenantIn,)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tenants", create_tenant)
