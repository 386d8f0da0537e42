"""The OpenAPI 3.1 document, served at ``GET /openapi.json``.

Route modules describe their own operations (``OPENAPI_PATHS``, ``OPENAPI_MODELS``);
``build_document`` merges them with the operations, codec and probe routes, then applies the
conventions every operation of a kind shares, so a new route gets them by construction:

- every POST, and every PATCH the idempotency middleware covers, takes ``Idempotency-Key``
  (and may answer 409 while the first request runs, 422 when the key was used for another
  request, ``Idempotent-Replayed`` on a repeat);
- every authenticated operation may answer 401 (with a challenge), 429 (with
  ``Retry-After``) and 503 (a backend or the identity provider's keys are unreachable);
- every operation with a body may answer 413 and 415; with a JSON body, 400 and 422 too.

Tests check the document against the routes the app registers and against the OpenAPI 3.1
meta-schema, and a schemathesis run checks the live API against it.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from adx_api import idempotency
from adx_api import openapi_parts as parts
from adx_api.openapi_parts import OPERATION, PREFER, errors, json_response, problem
from adx_api.openapi_parts import OPERATION_ID_PARAM as _ID_PARAM
from adx_api.routes import (
    file_lifecycle,
    files,
    groups,
    shares,
    storage,
    tenant_reads,
    tenants,
    upgrade,
    uploads,
    users,
)
from adx_core.contracts.progress import EventKind

# Route modules that describe their own paths and request models.
ROUTE_MODULES = (
    tenants,
    tenant_reads,
    upgrade,
    users,
    storage,
    files,
    file_lifecycle,
    uploads,
    shares,
    groups,
)
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
OPERATION_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"]
MAX_OPERATIONS_PAGE = 100


def build_document() -> dict[str, Any]:
    module_paths, module_schemas = _module_parts()
    # Copied: the conventions add to each operation, and parts are shared between them.
    paths = copy.deepcopy({**module_paths, **_operations_paths(), **_platform_paths()})
    paths = {path: _with_conventions(path, item) for path, item in sorted(paths.items())}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ADX Core API",
            "version": "1",
            "description": (
                "One contract for every operation. A direct operation answers 200 or 201 "
                "with the resource. A workflow operation answers 202 with an operation and "
                "a `Location`; `Prefer: wait=N` turns that into 200 when the workflow "
                "finishes within N seconds. Progress streams as Server-Sent Events. Errors "
                "are RFC 9457 problem documents with a stable `type` per kind.\n\n"
                "Every operation but those with their own `security` needs a bearer JWT "
                "(ADX-minted, or from the identity provider's JWKS). Requests count against "
                "the tenant's budget (`RateLimit-Policy`; 429 with `Retry-After` past it). "
                "Bodies are limited per route (413). Every POST takes `Idempotency-Key`. "
                "Browser origins listed in ADX_CORS_ALLOWED_ORIGINS get CORS headers and "
                "preflight answers on every path. Answers carry `X-Request-ID` (the "
                "caller's, or a new one), which the logs and traces name."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "linkPassword": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A password-protected shared link: any user name and the "
                    "link's password",
                },
                "streamToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "A token from POST /v1/operations/{id}/stream-token, "
                    "valid for that operation's events only (EventSource cannot send "
                    "an Authorization header)",
                },
            },
            "parameters": parts.PARAMETERS,
            "headers": parts.HEADERS,
            "responses": parts.RESPONSES,
            "schemas": {**module_schemas, **_SCHEMAS},
        },
    }


def _module_parts() -> tuple[dict[str, Any], dict[str, Any]]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for module in ROUTE_MODULES:
        for path, item in module.OPENAPI_PATHS.items():
            paths.setdefault(path, {}).update(item)
        for model in module.OPENAPI_MODELS:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
    return paths, schemas


# Conventions ------------------------------------------------------------------------------


def _with_conventions(path: str, item: dict[str, Any]) -> dict[str, Any]:
    for method in HTTP_METHODS:
        if method in item:
            _apply_conventions(path, method, item[method])
    return item


def takes_idempotency_key(path: str, method: str) -> bool:
    """Every POST (the contract), and the other methods the idempotency middleware covers
    (a tus append is exempt: Upload-Offset already makes a repeat harmless)."""
    upper = method.upper()
    return upper == "POST" or (
        upper in idempotency.METHODS and (upper, path) not in idempotency.EXEMPT_ROUTES
    )


def _apply_conventions(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    authenticated = operation.get("security") != []
    body = operation.get("requestBody")
    added: list[int] = []
    keyed = takes_idempotency_key(path, method)
    if keyed:
        # One shared Idempotency-Key parameter, whatever the route module wrote.
        operation["parameters"] = [
            *(
                p
                for p in operation.get("parameters", [])
                if not (p.get("name") == "Idempotency-Key" and p.get("in") == "header")
            ),
            parts.IDEMPOTENCY_KEY,
        ]
        added += [400, 409, 422]  # a malformed key; the first still runs; reused key
    if body is not None:
        added += [413, 415]
        if "application/json" in body.get("content", {}):
            added += [400, 422]
    if authenticated:
        added += [401, 429, 503]
    for code in added:
        responses.setdefault(str(code), problem(code))
    for status, response in responses.items():
        if "$ref" in response:
            continue  # shared components carry their own headers
        headers = response.setdefault("headers", {})
        for name, header in parts.COMMON_RESPONSE_HEADERS.items():
            headers.setdefault(name, header)
        if keyed and status.startswith("2"):
            headers.setdefault("Idempotent-Replayed", parts.header_ref("IdempotentReplayed"))
    operation["responses"] = dict(sorted(responses.items()))


# Operations -------------------------------------------------------------------------------


def _operations_paths() -> dict[str, Any]:
    operation = {"$ref": "#/components/schemas/Operation"}
    return {
        "/v1/operations": {
            "get": {
                "summary": "The caller's tenant's operations, filtered by type, status and "
                "time, paginated by cursor, in Temporal visibility's order. Items come from "
                "visibility: `result` and `error` are null there (GET the operation for them)",
                "operationId": "listOperations",
                "parameters": [
                    _query(
                        "type",
                        {"type": "string", "pattern": "^[a-z][a-z0-9_]{2,79}$"},
                        "A workflow type, such as tenant_provisioning_workflow",
                    ),
                    _query("status", {"enum": OPERATION_STATUSES}),
                    _query("since", _TIME, "Started at or after (RFC 3339, 1970 to 9998)"),
                    _query("until", _TIME, "Started at or before (RFC 3339, 1970 to 9998)"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_OPERATIONS_PAGE},
                        "Page size, 20 unless given",
                    ),
                    _query("cursor", {"type": "string"}, "`next_cursor` of the page before"),
                ],
                "responses": {
                    "200": json_response(
                        "A page of operations",
                        {"$ref": "#/components/schemas/OperationList"},
                    ),
                    **errors(400, 403),
                },
            }
        },
        "/v1/operations/{id}": {
            "get": {
                "summary": "An operation's status, progress, result or error. Another "
                "tenant's id is a 404, like an unknown one",
                "operationId": "getOperation",
                "parameters": [_ID_PARAM],
                "responses": {
                    "200": json_response("The operation", operation),
                    **errors(403, 404),
                },
            }
        },
        "/v1/operations/{id}/result": {
            "get": {
                "summary": "The finished operation's result, as the workflow returned it. "
                "409 `operation-not-finished` (with Retry-After) while it runs; 409 with "
                "the operation's error problem when it failed or was cancelled",
                "operationId": "getOperationResult",
                "parameters": [_ID_PARAM, PREFER],
                "responses": {
                    "200": {
                        "description": "The workflow's result",
                        "headers": {"Preference-Applied": parts.header_ref("PreferenceApplied")},
                        "content": {"application/json": {"schema": {}}},
                    },
                    **errors(403, 404),
                    "409": {
                        "description": "Not finished (`Retry-After` says when to ask again), "
                        "or failed or cancelled (the operation's error problem)",
                        "headers": {"Retry-After": parts.header_ref("RetryAfterOptional")},
                        "content": {
                            "application/problem+json": {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    },
                },
            }
        },
        "/v1/operations/{id}/cancel": {
            "post": {
                "summary": "Cancel; the workflow's compensation runs. 202 at once, or with "
                "`Prefer: wait=N` 200 once the operation has ended cancelled",
                "operationId": "cancelOperation",
                "parameters": [_ID_PARAM, PREFER],
                "responses": {
                    "200": OPERATION,
                    "202": {
                        **json_response("Cancelling: the operation", operation),
                        "headers": {
                            "Location": parts.header_ref("OperationLocation"),
                            "Preference-Applied": parts.header_ref("PreferenceApplied"),
                        },
                    },
                    **errors(403, 404, 409),
                },
            }
        },
        "/v1/operations/{id}/stream-token": {
            "post": {
                "summary": "A short-lived token for this operation's events, for EventSource "
                "(which cannot send Authorization)",
                "operationId": "createOperationStreamToken",
                "parameters": [_ID_PARAM],
                "responses": {
                    "201": json_response(
                        "The token and the events URL that carries it",
                        {"$ref": "#/components/schemas/StreamToken"},
                    ),
                    **errors(403, 404),
                },
            }
        },
        "/v1/operations/{id}/events": {
            "get": {
                "summary": "Progress as Server-Sent Events: `step` and `progress` events, "
                "then one `completed`, `failed` or `cancelled` with the final operation; "
                "the stream then closes. Every event has an `id`: reconnect with "
                "`Last-Event-ID` to resume without loss or duplicates. The stream opens with "
                "a `retry:` (spread over 1-2 s, so that clients do not all reconnect at "
                "once), and a `: ping` comment keeps the connection alive",
                "operationId": "streamOperationEvents",
                "security": [{"bearer": []}, {"streamToken": []}],
                "parameters": [
                    _ID_PARAM,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "The id of the last event received",
                        "schema": {"type": "string"},
                    },
                    _query(
                        "last_event_id",
                        {"type": "string"},
                        "Like Last-Event-ID, for clients that cannot set headers",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The event stream; the schema describes each event",
                        "content": {
                            "text/event-stream": {
                                "schema": {"$ref": "#/components/schemas/OperationEvent"}
                            }
                        },
                    },
                    "204": {
                        "description": "Last-Event-ID is at or past the final event: the "
                        "client has everything (this is what stops an EventSource from "
                        "reconnecting)"
                    },
                    **errors(403, 404),
                },
            }
        },
    }


def _query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


# Codec server and probes --------------------------------------------------------------------


def _platform_paths() -> dict[str, Any]:
    return {
        "/codec/decode": _codec_path("Decrypt payloads (Temporal codec server protocol)"),
        "/codec/encode": _codec_path("Encrypt payloads (Temporal codec server protocol)"),
        "/healthz": {"get": _probe("Liveness", "getHealth")},
        "/readyz": {"get": _probe("Readiness: the database and Temporal", "getReadiness", 503)},
        "/metrics": {
            "get": {
                **_probe("Prometheus metrics", "getMetrics"),
                "responses": {
                    "200": {
                        "description": "The Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                **_probe("This document", "getOpenApiDocument"),
                "responses": {"200": json_response("This document", {"type": "object"})},
            }
        },
    }


def _codec_path(summary: str) -> dict[str, Any]:
    payloads = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Payloads"}}}
    }
    name = summary.split()[0].lower()
    return {
        "post": {
            "summary": summary + "; platform admins only (and, in development, anyone on loopback)",
            "operationId": f"codec{name.title()}",
            # The route takes a missing token itself (development from loopback).
            "security": [{"bearer": []}, {}],
            "requestBody": {"required": True, **payloads},
            "responses": {
                "200": {"description": "The transformed payloads", **payloads},
                **errors(403, 404, 422),
            },
        },
        "options": {
            "summary": "CORS preflight for the Temporal UI",
            "operationId": f"codec{name.title()}Preflight",
            "security": [],
            "responses": {"204": {"description": "Allowed"}},
        },
    }


def _probe(summary: str, operation_id: str, *extra: int) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": json_response(summary, {"$ref": "#/components/schemas/Probe"})
    }
    for code in extra:
        responses[str(code)] = json_response("Not ready", {"$ref": "#/components/schemas/Probe"})
    return {"summary": summary, "operationId": operation_id, "security": [], "responses": responses}


# Shared schemas ------------------------------------------------------------------------------

_TIME = {"type": "string", "format": "date-time"}


def _sse_event(name: str | list[str], data_schema: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"const": name} if isinstance(name, str) else {"enum": name},
            "id": {"type": "string", "pattern": "^[0-9]{1,18}$"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{data_schema}"},
            },
        },
    }


_PROGRESS = {
    "type": "object",
    "required": ["step", "percent", "counters"],
    "properties": {
        "step": {"type": "string"},
        "percent": {"type": "integer", "minimum": 0, "maximum": 100},
        "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
_SCHEMAS: dict[str, Any] = {
    "Payloads": {
        "type": "object",
        "properties": {
            "payloads": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "string",
                                "contentEncoding": "base64",
                            },
                        },
                        "data": {"type": "string", "contentEncoding": "base64"},
                    },
                },
            }
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457. `type` is stable per kind of error; `errors` lists invalid "
        "fields by JSON pointer",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
                },
            },
        },
    },
    "OperationError": {
        "type": "object",
        "description": "Why an operation failed: the failed step and a stable code; never "
        "a stack trace",
        "required": ["type", "title", "step", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "detail": {"type": "string"},
            "step": {"type": "string"},
            "code": {"type": "string"},
        },
    },
    "Operation": {
        "type": "object",
        "required": ["id", "type", "status", "progress", "created_at", "links"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "description": "The workflow type"},
            "status": {"enum": OPERATION_STATUSES},
            "progress": _PROGRESS,
            "result": {"description": "The workflow's result, once succeeded"},
            "error": {"oneOf": [{"$ref": "#/components/schemas/OperationError"}, {"type": "null"}]},
            "created_at": _TIME,
            "updated_at": _TIME,
            "links": {
                "type": "object",
                "required": ["self", "events", "cancel"],
                "properties": {
                    name: {"type": "string"} for name in ("self", "events", "cancel", "result")
                },
            },
        },
    },
    "OperationList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Operation"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "StreamToken": {
        "type": "object",
        "required": ["token", "expires_at", "events_url"],
        "properties": {
            "token": {"type": "string"},
            "expires_at": _TIME,
            "events_url": {"type": "string"},
        },
    },
    "OperationEventStep": {
        "type": "object",
        "description": "`event: step`",
        "required": ["step", "phase", "percent", "counters", "at"],
        "properties": {
            "step": {"type": "string"},
            # The workflow's own event kinds, as the progress contract names them.
            "phase": {"enum": [kind.value for kind in EventKind if kind is not EventKind.PROGRESS]},
            "percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "counters": {"type": "object"},
            "detail": {"type": ["string", "null"]},
            "at": _TIME,
            "duration_ms": {"type": ["number", "null"]},
        },
    },
    "OperationEventProgress": {
        "type": "object",
        "description": "`event: progress`",
        "required": ["step", "percent", "counters", "at"],
        "properties": {
            "phase": {"const": EventKind.PROGRESS.value},
            "step": {"type": "string"},
            "percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "counters": {"type": "object"},
            "at": _TIME,
        },
    },
    "OperationEvent": {
        "type": "object",
        "description": "One Server-Sent Event: its `event` name, its `id` (increasing; "
        "send the last one as Last-Event-ID to resume) and its JSON `data`",
        "oneOf": [
            _sse_event("step", "OperationEventStep"),
            _sse_event("progress", "OperationEventProgress"),
            _sse_event(["completed", "failed", "cancelled"], "Operation"),
        ],
    },
    "Probe": {
        "type": "object",
        "description": "A probe's answer: `status`, and per check its outcome",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ok", "ready", "not ready"]},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}


_DOCUMENT = build_document()


async def openapi_json(_: web.Request) -> web.Response:
    return web.json_response(_DOCUMENT)
