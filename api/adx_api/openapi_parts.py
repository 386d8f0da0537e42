"""Building blocks for the OpenAPI document, shared by the route modules.

Each route module describes its own paths (``OPENAPI_PATHS``) and request models
(``OPENAPI_MODELS``) next to its handlers; ``adx_api.openapi`` merges them and adds what
every operation of a kind has (auth, rate-limit, body-limit and idempotency answers).
"""

from __future__ import annotations

import re
from typing import Any

from adx_core.contracts.billing import IDEMPOTENCY_KEY_PATTERN

# Problem responses by status: most are the plain problem document; a few always carry
# headers a client acts on (a challenge, when to retry).
_PROBLEM_RESPONSES = {401: "Unauthenticated", 429: "TooManyRequests", 503: "Unavailable"}
PROBLEM: dict[str, Any] = {"$ref": "#/components/responses/Problem"}


def problem(status: int) -> dict[str, Any]:
    """The problem response for ``status`` (a reference to a shared component)."""
    return {"$ref": f"#/components/responses/{_PROBLEM_RESPONSES.get(status, 'Problem')}"}


def header_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/headers/{name}"}


OPERATION: dict[str, Any] = {
    "description": "The operation",
    "headers": {"Preference-Applied": header_ref("PreferenceApplied")},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Operation"}}},
}
OPERATION_STARTED: dict[str, Any] = {
    "description": "Started: the operation, which `Location` names",
    "headers": {"Location": header_ref("OperationLocation")},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Operation"}}},
}
PREFER: dict[str, Any] = {"$ref": "#/components/parameters/Prefer"}
IDEMPOTENCY_KEY: dict[str, Any] = {"$ref": "#/components/parameters/IdempotencyKey"}
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
# The extension that marks an operation starting a workflow (its value is the workflow
# type): such an operation answers 202 with a Location, or 200 with `Prefer: wait`.
WORKFLOW_EXTENSION = "x-adx-workflow"

# Reusable components the parts above refer to; ``adx_api.openapi`` puts them in the
# document.
PARAMETERS: dict[str, Any] = {
    "Prefer": {
        "name": "Prefer",
        "in": "header",
        "description": "RFC 7240. `wait=N` (N at most 60): answer 200 with the finished "
        "operation if it ends within N seconds, else 202 as without it",
        "schema": {"type": "string"},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "A repeat with the same key answers with the first request's result "
        "(and `Idempotent-Replayed: true`) instead of doing the work again. The same key "
        "with another request is a 422; a repeat while the first still runs, a 409",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    },
}
HEADERS: dict[str, Any] = {
    "OperationLocation": {
        "description": "The operation's URL",
        "required": True,
        "schema": {"type": "string", "pattern": "^/v1/operations/[a-z][a-z0-9-]{2,80}$"},
    },
    "Location": {
        "description": "The created resource's URL",
        "required": True,
        "schema": {"type": "string"},
    },
    "PreferenceApplied": {
        "description": "RFC 7240: the `wait=N` preference that was honoured",
        "schema": {"type": "string", "pattern": "^wait=[0-9]+$"},
    },
    "IdempotentReplayed": {
        "description": "`true` when this answer repeats an earlier request with the same "
        "Idempotency-Key",
        "schema": {"enum": ["true"]},
    },
    "RetryAfter": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "RetryAfterOptional": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWWAuthenticate": {
        "description": "The challenge (RFC 6750 Bearer; Basic for a password-protected link)",
        "required": True,
        "schema": {"type": "string"},
    },
    "RequestId": {
        "description": "The request's correlation id (the caller's X-Request-ID or "
        "traceparent trace id, else a new one)",
        "schema": {"type": "string"},
    },
    "RateLimitPolicy": {
        "description": "The budget this request counts against (IETF RateLimit header "
        'fields draft): `"tenant";q=<requests>;w=<window seconds>`',
        "schema": {"type": "string", "pattern": '^"[a-z]+";q=[0-9]+;w=[0-9]+$'},
    },
    "RateLimit": {
        "description": 'What is left of the budget: `"tenant";r=<remaining>;t=<seconds to reset>`',
        "schema": {"type": "string", "pattern": '^"[a-z]+";r=[0-9]+;t=[0-9]+$'},
    },
}
# Headers that may come on any answer: the correlation id, and the budget the request
# counted against (every counted answer; the remainder only on a 429).
COMMON_RESPONSE_HEADERS: dict[str, Any] = {
    "X-Request-ID": header_ref("RequestId"),
    "RateLimit-Policy": header_ref("RateLimitPolicy"),
}


def _problem_response(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**COMMON_RESPONSE_HEADERS, **headers},
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


RESPONSES: dict[str, Any] = {
    "Problem": _problem_response("An RFC 9457 problem document"),
    "Unauthenticated": _problem_response(
        "No valid bearer token", **{"WWW-Authenticate": header_ref("WWWAuthenticate")}
    ),
    "TooManyRequests": _problem_response(
        "The tenant's request budget is spent (or, on a shared link, too many wrong passwords)",
        **{"Retry-After": header_ref("RetryAfter"), "RateLimit": header_ref("RateLimit")},
    ),
    "Unavailable": _problem_response(
        "A backend (database, Temporal, storage, the identity provider's keys) is not "
        "reachable; retry",
        **{"Retry-After": header_ref("RetryAfterOptional")},
    ),
}


# Downloads (a file's bytes, a thumbnail, a shared link) are streamed the same way
# (``adx_api.streaming.stream_object``): conditional, one byte range at most.
DOWNLOAD_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "Range",
        "in": "header",
        "description": "One byte range (`bytes=first-last`, `bytes=first-`, `bytes=-suffix`); "
        "several ranges, or one not understood, get the whole file",
        "schema": {"type": "string"},
    },
    {
        "name": "If-Range",
        "in": "header",
        "description": "The ETag the client's partial copy has; another version is sent whole",
        "schema": {"type": "string"},
    },
    {
        "name": "If-None-Match",
        "in": "header",
        "description": "The ETag the client has; 304 if it is still current",
        "schema": {"type": "string"},
    },
]


def download_responses(description: str) -> dict[str, Any]:
    """200 (the bytes), 206 (one range), 304 (unchanged) and 416 (a range past the end)."""
    content = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    headers: dict[str, Any] = {
        "ETag": {
            "description": "The version (the content's SHA-256)",
            "schema": {"type": "string"},
        },
        "Accept-Ranges": {"required": True, "schema": {"const": "bytes"}},
        "Content-Disposition": {
            "description": "`attachment` with the file's name, or `inline`",
            "required": True,
            "schema": {"type": "string"},
        },
    }
    content_range = {
        "description": "`bytes first-last/size`",
        "required": True,
        "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"},
    }
    return {
        "200": {"description": description, "headers": headers, "content": content},
        "206": {
            "description": "One byte range of it",
            "headers": {**headers, "Content-Range": content_range},
            "content": content,
        },
        "304": {
            "description": "Not modified: If-None-Match names the current version",
            "headers": {"ETag": headers["ETag"]},
        },
        "416": problem(416),
    }


def errors(*codes: int) -> dict[str, Any]:
    return {str(code): problem(code) for code in codes}


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
    """A POST (or PATCH or DELETE) that starts a workflow: 202 with the operation, or 200
    with ``Prefer: wait``. ``summary`` names the workflow type as ``(<type>_workflow)``."""
    spec: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        WORKFLOW_EXTENSION: workflow_named_in(summary),
        "parameters": [PREFER],
        "responses": {"200": OPERATION, "202": OPERATION_STARTED, **errors(*error_codes)},
    }
    if body_model is not None:
        spec["requestBody"] = json_body(body_model)
    return spec


def workflow_named_in(summary: str) -> str:
    match = re.search(r"\((\w+_workflow)\)", summary)
    if match is None:
        raise ValueError(f"a workflow operation's summary names its workflow: {summary!r}")
    return match.group(1)
