"""Helpers shared by routes: JSON bodies, roles, and the 202-or-200 operation answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowFailureError, WorkflowHandle

from adx_api.keys import SETTINGS
from adx_api.operations import Operation, Operations
from adx_api.problems import ProblemError
from adx_core.auth import Claims, Role

Model = TypeVar("Model", bound=BaseModel)

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d{1,4})(?:$|[,;\s])", re.IGNORECASE)
MAX_WAIT_SECONDS = 60


async def read_json(request: web.Request, model: type[Model]) -> Model:
    """Parse and validate a JSON body; errors name the field, never echo large input."""
    if request.content_type != "application/json":
        raise ProblemError(415, "unsupported-media-type", "send the body as application/json")
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ProblemError(413, "payload-too-large", f"the body may be at most {limit} bytes")
    raw = await request.read()  # client_max_size also bounds bodies without a length
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


def require_role(claims: Claims, *roles: Role) -> None:
    if not claims.has_any(*roles):
        raise ProblemError(
            403, "forbidden", f"this needs one of the roles: {', '.join(r.value for r in roles)}"
        )


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
    # A failure is still an answer: the operation below reports it.
    with contextlib.suppress(TimeoutError, WorkflowFailureError):
        await asyncio.wait_for(handle.result(), wait)
    description = await handle.describe()
    operation = await operations.build(handle, description)
    status = 200 if operation.status in ("succeeded", "failed", "cancelled") else 202
    return web.json_response(operation.to_json(), status=status, headers=headers)
