"""RFC 9457 problem documents: their shape, and how aiohttp's own errors map onto them."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from adx_api.problems import (
    CONTENT_TYPE,
    TYPE_BASE,
    ProblemError,
    from_http_exception,
    problem_response,
)


def test_to_dict_has_type_title_status() -> None:
    """type is a URI under the problem base, title defaults per kind, status is the code."""
    body = ProblemError(404, "not-found").to_dict()
    assert body == {"type": TYPE_BASE + "not-found", "title": "Not found", "status": 404}
    assert body["type"].startswith("https://")


def test_to_dict_adds_detail_instance_and_extensions() -> None:
    """detail, instance and extension members appear when given."""
    problem = ProblemError(
        422, "validation", "the body has invalid fields", errors=[{"pointer": "/slug"}]
    )
    assert problem.to_dict("/v1/tenants") == {
        "type": TYPE_BASE + "validation",
        "title": "The request is not valid",
        "status": 422,
        "detail": "the body has invalid fields",
        "instance": "/v1/tenants",
        "errors": [{"pointer": "/slug"}],
    }


def test_unknown_kind_gets_a_readable_title() -> None:
    """A kind without a fixed title gets one derived from the kind; a given title wins."""
    assert ProblemError(400, "bad-thing").title == "Bad thing"
    assert ProblemError(400, "bad-thing", title="Custom").title == "Custom"


def test_problem_response_is_problem_json() -> None:
    """The response has the problem media type, the status and the extra headers."""
    problem = ProblemError(401, "unauthenticated", "no", headers={"WWW-Authenticate": "Bearer"})
    response = problem_response(problem)
    assert response.status == 401
    assert response.content_type == CONTENT_TYPE == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.text is not None
    assert json.loads(response.text)["type"] == TYPE_BASE + "unauthenticated"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (web.HTTPUnauthorized(), "unauthenticated"),
        (web.HTTPForbidden(), "forbidden"),
        (web.HTTPNotFound(), "not-found"),
        (web.HTTPRequestEntityTooLarge(max_size=10, actual_size=20), "payload-too-large"),
        (web.HTTPUnsupportedMediaType(), "unsupported-media-type"),
    ],
)
def test_from_http_exception_maps_known_statuses(exc: web.HTTPException, kind: str) -> None:
    """aiohttp's errors keep their status and get our kind, without aiohttp's text."""
    problem = from_http_exception(exc)
    assert problem.status == exc.status
    assert problem.kind == kind
    assert problem.detail is None
    assert problem.headers == {}


def test_method_not_allowed_keeps_allow() -> None:
    """405 carries the Allow header of the route."""
    problem = from_http_exception(web.HTTPMethodNotAllowed("DELETE", ["GET", "POST"]))
    assert problem.status == 405
    assert problem.kind == "method-not-allowed"
    assert set(problem.headers["Allow"].split(",")) == {"GET", "POST"}


def test_other_statuses_are_generic_with_the_reason() -> None:
    """Statuses without a kind of their own become http-error with the reason as detail."""
    problem = from_http_exception(web.HTTPBadRequest())
    assert (problem.status, problem.kind, problem.detail) == (400, "http-error", "Bad Request")
    assert from_http_exception(web.HTTPConflict()).to_dict()["type"] == TYPE_BASE + "http-error"
