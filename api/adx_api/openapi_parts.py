"""Building blocks for the OpenAPI document, shared by the route modules.

Each route module describes its own paths (``OPENAPI_PATHS``) and request models
(``OPENAPI_MODELS``) next to its handlers; ``adx_api.openapi`` merges them.
"""

from __future__ import annotations

from typing import Any

PROBLEM: dict[str, Any] = {"$ref": "#/components/responses/Problem"}
OPERATION: dict[str, Any] = {
    "description": "The operation",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Operation"}}},
}
OPERATION_STARTED: dict[str, Any] = {
    **OPERATION,
    "headers": {"Location": {"schema": {"type": "string"}}},
}
PREFER: dict[str, Any] = {"$ref": "#/components/parameters/Prefer"}
OPERATION_ID_PARAM: dict[str, Any] = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z][a-z0-9-]{2,80}$"},
}
UUID_ID_PARAM: dict[str, Any] = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def errors(*codes: int) -> dict[str, Any]:
    return {str(code): PROBLEM for code in codes}


def json_body(model: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def workflow_post(
    summary: str, operation_id: str, body_model: str | None, *error_codes: int
) -> dict[str, Any]:
    """A POST (or DELETE) that starts a workflow: 202 with the operation, or 200 with
    ``Prefer: wait``."""
    spec: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "parameters": [PREFER],
        "responses": {"200": OPERATION, "202": OPERATION_STARTED, **errors(*error_codes)},
    }
    if body_model is not None:
        spec["requestBody"] = json_body(body_model)
    return spec
