"""Helpers shared by routes: JSON bodies, roles, and the 202-or-200 operation answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from adx_api.keys import SETTINGS, TEMPORAL, claims_of, context_of
from adx_api.operations import TERMINAL, Operation, Operations, search_attributes
from adx_api.problems import ProblemError
from adx_core.auth import Claims, Role
from adx_core.contracts import search
from adx_core.contracts.billing import IDEMPOTENCY_KEY_PATTERN
from adx_core.contracts.permissions import role_grants
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.metrics import WORKFLOWS_STARTED

Model = TypeVar("Model", bound=BaseModel)

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d{1,4})(?:$|[,;\s])", re.IGNORECASE)
MAX_WAIT_SECONDS = 60
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


async def read_json(request: web.Request, model: type[Model]) -> Model:
    """Parse and validate a JSON body; errors name the field, never echo large input."""
    if request.content_type != "application/json":
        raise ProblemError(415, "unsupported-media-type", "send the body as application/json")
    # The route's limit: adx_api.body_limits sets it as the request's client_max_size, the
    # bound read() enforces on bodies without a Content-Length too.
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise ProblemError(413, "payload-too-large", f"the body may be at most {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ProblemError(
            413, "payload-too-large", f"the body may be at most {limit} bytes"
        ) from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser allows ("[[[[...") is malformed too.
        raise ProblemError(400, "malformed-body", "the body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = [
            {
                "pointer": "/" + "/".join(str(part) for part in error["loc"]),
                "detail": error["msg"],
            }
            for error in err.errors(include_url=False, include_input=False)[:20]
        ]
        raise ProblemError(
            422, "validation", "the body has invalid fields", errors=errors
        ) from None


def require_permission(claims: Claims, permission: str) -> None:
    """The caller's roles must grant ``permission`` (adx_core.contracts.permissions holds
    the one table). File permissions, which a tenant may narrow, are checked against the
    tenant's rows instead: adx_api.file_access.require_permission."""
    if not role_grants(claims.roles, permission):
        raise ProblemError(403, "forbidden", f"your role does not allow {permission}")


def parse_uuid(value: str, what: str = "resource") -> uuid.UUID:
    """A path id; anything that is not a UUID cannot name a resource, so it is a 404."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ProblemError(404, "not-found", f"no such {what}") from None
    if str(parsed) != value.lower():  # refuse braces, urn: prefixes and other spellings
        raise ProblemError(404, "not-found", f"no such {what}")
    return parsed


def is_platform_admin(claims: Claims) -> bool:
    return claims.tenant_id == PLATFORM_TENANT_ID and claims.has_any(Role.PLATFORM_ADMIN)


def tenant_in_reach(claims: Claims, tenant_id: str) -> uuid.UUID:
    """The tenant a path names, if the caller may see it: their own tenant, or any tenant
    for a platform admin. Another tenant's id is a 404, never a 403: its existence is not
    the caller's business."""
    parsed = parse_uuid(tenant_id, "tenant")
    if str(parsed) != claims.tenant_id and not is_platform_admin(claims):
        raise ProblemError(404, "not-found", "no such tenant")
    return parsed


def prefer_wait(request: web.Request) -> int | None:
    """RFC 7240 ``Prefer: wait=N``, capped so a request cannot hold a connection forever."""
    header = request.headers.get("Prefer")
    if not header:
        return None
    match = _PREFER_WAIT.search(f" {header} ")
    if match is None:
        return None
    return min(int(match.group(1)), MAX_WAIT_SECONDS)


async def operation_response(
    request: web.Request,
    operations: Operations,
    handle: WorkflowHandle[Any, Any],
    workflow_type: str,
) -> web.Response:
    """202 with the operation, or 200 with the finished operation if ``Prefer: wait`` allows."""
    wait = prefer_wait(request)
    headers = {"Location": f"/v1/operations/{handle.id}"}
    if wait is None:
        # Just started: nothing to ask Temporal or a worker yet. Answering from what we know
        # keeps the 202 off the worker's critical path (a progress query waits for the
        # workflow's first task).
        operation = Operation.started(handle.id, workflow_type, datetime.now(UTC))
        return web.json_response(operation.to_json(), status=202, headers=headers)
    headers["Preference-Applied"] = f"wait={wait}"
    known: dict[str, Any] = {}
    # A failure is still an answer: the operation below reports it.
    with contextlib.suppress(TimeoutError, WorkflowFailureError):
        known["known_result"] = await asyncio.wait_for(handle.result(), wait)
    description = await handle.describe()
    operation = await operations.build(handle, description, **known)
    status = 200 if operation.status in ("succeeded", "failed", "cancelled") else 202
    return web.json_response(operation.to_json(), status=status, headers=headers)


async def start_operation(
    request: web.Request,
    *,
    workflow: str,
    arg: object,
    workflow_id: str,
    domain: str,
    subject_tenant_id: str,
    join_running: bool = False,
    conflict_detail: str = "the operation already exists",
) -> web.Response:
    """Start ``workflow`` for the caller and answer with its operation (202, or 200 with
    ``Prefer: wait``). The operation belongs to the caller's tenant.

    ``join_running``: a second request for a workflow id that is still running answers
    with the running operation rather than 409 (for operations that are one per subject,
    such as removing a tenant). Otherwise a duplicate id is a 409 conflict.
    """
    claims = claims_of(request)
    client = request.app[TEMPORAL]
    try:
        handle = await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=request.app[SETTINGS].task_queue(domain),
            search_attributes=search_attributes(
                claims.tenant_id, context_of(request).correlation_id
            ),
            memo={"subject_tenant_id": subject_tenant_id, "requested_by": claims.user_id},
            id_conflict_policy=(
                WorkflowIDConflictPolicy.USE_EXISTING
                if join_running
                else WorkflowIDConflictPolicy.FAIL
            ),
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise ProblemError(409, "conflict", conflict_detail) from None
    WORKFLOWS_STARTED.labels(workflow).inc()
    return await operation_response(request, Operations(client), handle, workflow)


def idempotency_key(request: web.Request) -> str | None:
    """The request's ``Idempotency-Key``: 1 to 200 printable ASCII characters, given once.
    Routes derive the workflow id from it, so a retry names the same workflow."""
    values = request.headers.getall("Idempotency-Key", [])
    if not values:
        return None
    if len(values) > 1 or not _IDEMPOTENCY_KEY.match(values[0]):
        raise ProblemError(
            400, "bad-idempotency-key", "Idempotency-Key must be 1 to 200 printable characters"
        )
    return str(values[0])


async def existing_operation(request: web.Request, workflow_id: str) -> web.Response | None:
    """The operation an earlier request with the same Idempotency-Key started, as it is
    now: 200 once it has ended, 202 before (``Prefer: wait`` applies as on a first
    request); ``None`` if Temporal does not know it or it is another tenant's."""
    client = request.app[TEMPORAL]
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.typed_search_attributes.get(search.TENANT_ID) != claims_of(request).tenant_id:
        return None  # ids are derived from the caller's tenant: not reachable
    operations = Operations(client)
    if prefer_wait(request) is not None:
        return await operation_response(request, operations, handle, description.workflow_type)
    operation = await operations.build(handle, description)
    return web.json_response(
        operation.to_json(),
        status=200 if operation.status in TERMINAL else 202,
        headers={"Location": f"/v1/operations/{workflow_id}"},
    )
