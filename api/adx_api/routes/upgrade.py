"""``POST /v1/tenants/{id}/upgrade`` starts tenant_upgrade_workflow.

Callers: a tenant-admin of that tenant, or a platform admin. Another tenant's id is a 404.

Duplicates. Without an ``Idempotency-Key`` the operation id is one per tenant: a second
request while an upgrade runs is a 409, and one after it ended starts a new upgrade (which
fails validation if the tenant is already on that plan). With a key the operation id is
derived from the tenant and the key, and a repeated request, while the first runs or after
it ended, answers with the first request's operation: it never starts a second charge.
Reusing a key for a different request (another plan or payment method, or another
caller's tenant) is a 422.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from adx_api.keys import SESSIONS, SETTINGS, TEMPORAL, claims_of, context_of
from adx_api.openapi_parts import UUID_ID_PARAM, workflow_post
from adx_api.operations import TERMINAL, Operations, search_attributes
from adx_api.problems import ProblemError
from adx_api.routes.common import (
    idempotency_key,
    operation_response,
    prefer_wait,
    read_json,
    require_permission,
    tenant_in_reach,
)
from adx_core.contracts import search
from adx_core.contracts.billing import (
    IDEMPOTENCY_KEY_PATTERN,
    TENANT_UPGRADE_WORKFLOW,
    TenantUpgradeRequest,
    upgrade_workflow_id,
)
from adx_core.contracts.permissions import BILLING_MANAGE
from adx_core.contracts.plans import Plan
from adx_core.contracts.tenants import TASK_QUEUE, TenantStatus
from adx_core.db.engine import tenant_session
from adx_core.db.models import Tenant
from adx_core.metrics import WORKFLOWS_STARTED

_GONE = (TenantStatus.FAILED.value, TenantStatus.DEPROVISIONED.value)

PaymentMethod = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,255}$")]


class UpgradeTenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    plan: Plan
    # The provider's payment method id (a Stripe PaymentMethod such as pm_...).
    payment_method: PaymentMethod | None = None


def _fingerprint(tenant_id: str, body: UpgradeTenantIn) -> str:
    text = f"{tenant_id}|{body.plan.value}|{body.payment_method or ''}"
    return hashlib.sha256(text.encode()).hexdigest()


async def upgrade_tenant(request: web.Request) -> web.Response:
    claims = claims_of(request)
    tenant_uuid = tenant_in_reach(claims, request.match_info["id"])
    tenant_id = str(tenant_uuid)
    require_permission(claims, BILLING_MANAGE)
    key = idempotency_key(request)
    body = await read_json(request, UpgradeTenantIn)
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        status = await session.scalar(select(Tenant.status).where(Tenant.id == tenant_uuid))
    if status is None or status in _GONE:
        raise ProblemError(404, "not-found", "no such tenant")

    client = request.app[TEMPORAL]
    workflow_id = upgrade_workflow_id(tenant_id, key)
    fingerprint = _fingerprint(tenant_id, body)
    try:
        handle: WorkflowHandle[Any, Any] = await client.start_workflow(
            TENANT_UPGRADE_WORKFLOW,
            TenantUpgradeRequest(
                tenant_id=tenant_id,
                target_plan=body.plan,
                requested_by=claims.user_id,
                payment_method=body.payment_method,
            ),
            id=workflow_id,
            task_queue=request.app[SETTINGS].task_queue(TASK_QUEUE),
            search_attributes=search_attributes(
                claims.tenant_id, context_of(request).correlation_id
            ),
            memo={
                "subject_tenant_id": tenant_id,
                "requested_by": claims.user_id,
                "request_fingerprint": fingerprint,
            },
            # With a key: join the running operation, and never start a second run of an
            # ended one (that would charge again); the earlier operation is the answer.
            id_conflict_policy=(
                WorkflowIDConflictPolicy.USE_EXISTING if key else WorkflowIDConflictPolicy.FAIL
            ),
            id_reuse_policy=(
                WorkflowIDReusePolicy.REJECT_DUPLICATE
                if key
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE
            ),
        )
    except WorkflowAlreadyStartedError:
        if key is None:
            raise ProblemError(
                409, "conflict", "an upgrade of this tenant is already running"
            ) from None
        handle = client.get_workflow_handle(workflow_id)
    else:
        WORKFLOWS_STARTED.labels(TENANT_UPGRADE_WORKFLOW).inc()
    if key is None:
        return await operation_response(
            request, Operations(client), handle, TENANT_UPGRADE_WORKFLOW
        )
    return await _keyed_response(request, handle, claims.tenant_id, fingerprint)


async def _keyed_response(
    request: web.Request, handle: WorkflowHandle[Any, Any], owner: str, fingerprint: str
) -> web.Response:
    """The operation a keyed request names, once it is known to be this same request."""
    description = await handle.describe()
    memo = await description.memo()
    if (
        description.typed_search_attributes.get(search.TENANT_ID) != owner
        or memo.get("request_fingerprint") != fingerprint
    ):
        raise ProblemError(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was used for a different request",
        )
    operations = Operations(request.app[TEMPORAL])
    if prefer_wait(request) is not None:
        return await operation_response(request, operations, handle, TENANT_UPGRADE_WORKFLOW)
    operation = await operations.build(handle, description)
    return web.json_response(
        operation.to_json(),
        status=200 if operation.status in TERMINAL else 202,
        headers={"Location": f"/v1/operations/{handle.id}"},
    )


_UPGRADE = workflow_post(
    "Change a tenant's plan (tenant_upgrade_workflow): validate, pay the difference, apply, "
    "confirm; tenant admins of the tenant and platform admins",
    "upgradeTenant",
    "UpgradeTenantIn",
    400,
    401,
    403,
    404,
    409,
    413,
    415,
    422,
)
_UPGRADE["parameters"] = [
    UUID_ID_PARAM,
    *_UPGRADE["parameters"],
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Repeating a request with the same key answers with the first "
        "request's operation instead of charging again",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    },
]

OPENAPI_PATHS: dict[str, Any] = {"/v1/tenants/{id}/upgrade": {"post": _UPGRADE}}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (UpgradeTenantIn,)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tenants/{id}/upgrade", upgrade_tenant)
