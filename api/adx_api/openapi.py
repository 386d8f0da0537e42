"""The OpenAPI 3.1 document. A test checks that every route the app serves is in it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adx_api.openapi_parts import OPERATION as _OPERATION
from adx_api.openapi_parts import OPERATION_ID_PARAM as _ID_PARAM
from adx_api.openapi_parts import errors as _errors
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


def build_document() -> dict[str, Any]:
    module_paths, module_schemas = _module_parts()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ADX Core API",
            "version": "1",
            "description": (
                "Multi-step operations run as Temporal workflows. They answer 202 with an "
                "operation; `Prefer: wait=N` turns that into 200 when the workflow finishes "
                "within N seconds. Errors are RFC 9457 problem documents."
            ),
        },
        "security": [{"bearer": []}],
        "paths": {
            **module_paths,
            "/v1/operations/{id}": {
                "get": {
                    "summary": "An operation's status, progress, result or error",
                    "operationId": "getOperation",
                    "parameters": [_ID_PARAM],
                    "responses": {"200": _OPERATION, **_errors(401, 404)},
                }
            },
            "/v1/operations/{id}/events": {
                "get": {
                    "summary": "Progress as Server-Sent Events, resumable with Last-Event-ID",
                    "operationId": "streamOperationEvents",
                    "parameters": [
                        _ID_PARAM,
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "`step` events, then `completed`, `failed` or "
                            "`cancelled`; the stream then closes",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 404),
                    },
                }
            },
            "/v1/operations/{id}/cancel": {
                "post": {
                    "summary": "Cancel; the workflow's compensation runs",
                    "operationId": "cancelOperation",
                    "parameters": [_ID_PARAM],
                    "responses": {"202": _OPERATION, **_errors(401, 403, 404, 409)},
                }
            },
            "/codec/decode": _codec_path("Decrypt payloads (Temporal codec server protocol)"),
            "/codec/encode": _codec_path("Encrypt payloads (Temporal codec server protocol)"),
            "/healthz": {"get": _probe("Liveness")},
            "/readyz": {"get": _probe("Readiness: database and Temporal", 503)},
            "/metrics": {"get": _probe("Prometheus metrics")},
            "/openapi.json": {"get": _probe("This document")},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "parameters": {
                "Prefer": {
                    "name": "Prefer",
                    "in": "header",
                    "description": "RFC 7240 `wait=N`: answer 200 if done within N seconds",
                    "schema": {"type": "string"},
                }
            },
            "responses": {
                "Problem": {
                    "description": "An RFC 9457 problem document",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
            },
            "schemas": {
                **module_schemas,
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
                    "required": ["type", "title", "status"],
                    "properties": {
                        "type": {"type": "string", "format": "uri"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                },
                "Operation": {
                    "type": "object",
                    "required": ["id", "type", "status", "progress", "created_at", "links"],
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string"},
                        "status": {
                            "enum": ["pending", "running", "succeeded", "failed", "cancelled"]
                        },
                        "progress": {
                            "type": "object",
                            "properties": {
                                "step": {"type": "string"},
                                "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                                "counters": {"type": "object"},
                            },
                        },
                        "result": {},
                        "error": {"type": ["object", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "links": {"type": "object"},
                    },
                },
            },
        },
    }


def _codec_path(summary: str) -> dict[str, Any]:
    payloads = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Payloads"}}}
    }
    return {
        "post": {
            "summary": summary + "; platform admins only",
            "requestBody": {"required": True, **payloads},
            "responses": {
                "200": {"description": "The transformed payloads", **payloads},
                **_errors(400, 401, 403, 404, 413, 415, 422),
            },
        },
        "options": {
            "summary": "CORS preflight for the Temporal UI",
            "security": [],
            "responses": {"204": {"description": "Allowed"}},
        },
    }


def _probe(summary: str, *extra: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": summary}}
    for code in extra:
        responses[str(code)] = {"description": "Not ready"}
    return {"summary": summary, "security": [], "responses": responses}


_DOCUMENT = build_document()


async def openapi_json(_: web.Request) -> web.Response:
    return web.json_response(_DOCUMENT)
