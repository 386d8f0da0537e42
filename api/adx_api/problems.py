"""RFC 9457 problem details. Every error the API returns is ``application/problem+json``.

Each kind of error has a stable ``type`` URI, so clients branch on it rather than on the
human-readable title. Details never carry stack traces, SQL or secrets.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://adx.dev/problems/"

_TITLES = {
    "unauthenticated": "Authentication required",
    "forbidden": "Not allowed",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "validation": "The request is not valid",
    "malformed-body": "The request body could not be parsed",
    "unsupported-media-type": "Unsupported media type",
    "payload-too-large": "The request body is too large",
    "conflict": "Conflict",
    "unavailable": "A backend service is unavailable",
    "internal": "Internal error",
}


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        kind: str,
        detail: str | None = None,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or kind)
        self.status = status
        self.kind = kind
        self.title = title or _TITLES.get(kind, kind.replace("-", " ").capitalize())
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


def problem_response(problem: ProblemError, request: web.Request | None = None) -> web.Response:
    instance = request.path if request is not None else None
    return web.Response(
        status=problem.status,
        text=json.dumps(problem.to_dict(instance)),
        content_type=CONTENT_TYPE,
        headers=problem.headers,
    )


def from_http_exception(exc: web.HTTPException) -> ProblemError:
    """Turn aiohttp's own errors (unknown route, wrong method, body too large) into problems."""
    kind = {
        401: "unauthenticated",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
        415: "unsupported-media-type",
    }.get(exc.status, "http-error")
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return ProblemError(
        exc.status, kind, exc.reason if kind == "http-error" else None, headers=headers
    )


def invalid_token(detail: str, reason: str) -> ProblemError:
    """401 for a token that was given but refused; ``reason`` is the stable kind."""
    return ProblemError(
        401,
        "unauthenticated",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="adx", error="invalid_token"'},
        reason=reason,
    )
