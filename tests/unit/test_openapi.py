"""The OpenAPI document describes exactly the routes the API serves, and every operation
carries the answers its kind shares (auth, rate limit, body limits, idempotency)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator

from adx_api.app import create_app
from adx_api.idempotency import EXEMPT_ROUTES
from adx_api.idempotency import METHODS as IDEMPOTENT_METHODS
from adx_api.openapi import _apply_conventions, build_document
from adx_api.openapi_parts import WORKFLOW_EXTENSION
from adx_core.settings import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def app() -> web.Application:
    """The API application, built but not started (no server is contacted)."""
    return create_app(Settings(jwt_secret="openapi-test-secret-that-is-long-enough"))


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def _served(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    get_handlers = {
        (route.resource.canonical, route.handler)
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None
    }
    for route in app.router.routes():
        if route.resource is None:
            continue
        # aiohttp adds a HEAD next to every GET by itself, with the GET's handler; a HEAD
        # with a handler of its own (tus) is a route of ours.
        if route.method == "HEAD" and (route.resource.canonical, route.handler) in get_handlers:
            continue
        routes.add((route.resource.canonical, route.method.lower()))
    return routes


def _operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, method, _ in _operations(document)}


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _parameters(document: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [_resolve(document, p) for p in operation.get("parameters", [])]


def _is_authenticated(operation: dict[str, Any]) -> bool:
    return operation.get("security") != []


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    """The whole document passes the OpenAPI 3.1 meta-schema (and its own JSON Schemas)."""
    assert document["openapi"].startswith("3.1")
    errors = [str(e.message) for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert not errors, errors[:5]


def test_every_route_is_documented(app: web.Application, document: dict[str, Any]) -> None:
    """Each (path, method) the app registers appears in the document's paths."""
    served = _served(app)
    assert ("/v1/tenants", "post") in served
    missing = served - _documented(document)
    assert not missing, f"routes missing from /openapi.json: {sorted(missing)}"


def test_every_documented_operation_is_served(
    app: web.Application, document: dict[str, Any]
) -> None:
    """The document promises nothing the app does not serve."""
    extra = _documented(document) - _served(app)
    assert not extra, f"documented but not served: {sorted(extra)}"


def test_path_parameters_are_declared(document: dict[str, Any]) -> None:
    """Every {param} in a path is declared as a required path parameter of its operations,
    and no operation declares a path parameter its path lacks."""
    for path, method, operation in _operations(document):
        names = set(re.findall(r"{(\w+)}", path))
        declared = {
            p["name"]
            for p in _parameters(document, operation)
            if p.get("in") == "path" and p.get("required")
        }
        undeclared = {p["name"] for p in _parameters(document, operation) if p["in"] == "path"}
        assert declared == names == undeclared, (path, method)


def test_parameters_are_unique(document: dict[str, Any]) -> None:
    """No operation lists the same (name, location) twice (OpenAPI forbids it)."""
    for path, method, operation in _operations(document):
        seen = [(p["name"].lower(), p["in"]) for p in _parameters(document, operation)]
        assert len(seen) == len(set(seen)), (path, method, seen)


def test_operation_ids_are_present_and_unique(document: dict[str, Any]) -> None:
    """Every operation has an operationId, and no two share one (client generators rely
    on it)."""
    ids = [operation.get("operationId") for _, _, operation in _operations(document)]
    assert None not in ids
    assert len(ids) == len(set(ids))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    """Every $ref points at something that exists in the document."""
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict), f"dangling {ref}"
            assert part in node, f"dangling {ref}"
            node = node[part]


def test_errors_are_problem_documents(document: dict[str, Any]) -> None:
    """Every documented 4xx/5xx answer is an RFC 9457 problem document (readiness's 503
    is the probe's own report)."""
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path, status) == ("/readyz", "503"):
                continue
            content = _resolve(document, response)["content"]
            assert list(content) == ["application/problem+json"], (path, method, status)
            schema = content["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (path, method, status)


def test_every_post_takes_an_idempotency_key(document: dict[str, Any]) -> None:
    """Every POST, and every PATCH the idempotency middleware covers, declares
    Idempotency-Key and the answers a key can cause: 400 for a malformed key, 409 while the
    first request runs, 422 for a key reused with another request; its successes may carry
    Idempotent-Replayed."""
    for path, method, operation in _operations(document):
        covered = method.upper() in IDEMPOTENT_METHODS and (method.upper(), path) not in (
            EXEMPT_ROUTES
        )
        if method != "post" and not covered:
            continue
        names = {(p["name"], p["in"]) for p in _parameters(document, operation)}
        assert ("Idempotency-Key", "header") in names, path
        assert {"400", "409", "422"} <= set(operation["responses"]), path
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                assert "Idempotent-Replayed" in response.get("headers", {}), (path, status)


def test_authenticated_operations_document_auth_and_rate_limits(
    document: dict[str, Any],
) -> None:
    """Every operation that needs a token may answer 401 with a challenge, 429 with
    Retry-After and 503 when a backend or the key set is unreachable."""
    for path, method, operation in _operations(document):
        if not _is_authenticated(operation):
            continue
        responses = operation["responses"]
        assert {"401", "429", "503"} <= set(responses), (path, method)
        challenge = _resolve(document, responses["401"])["headers"]["WWW-Authenticate"]
        assert _resolve(document, challenge)["required"] is True
        retry = _resolve(document, responses["429"])["headers"]["Retry-After"]
        assert _resolve(document, retry)["required"] is True


def test_operations_with_a_body_document_its_limits(document: dict[str, Any]) -> None:
    """A body can be too large (413) or of the wrong type (415); a JSON body can also be
    malformed (400) or invalid (422)."""
    for path, method, operation in _operations(document):
        body = operation.get("requestBody")
        if body is None:
            continue
        expected = {"413", "415"}
        if "application/json" in body["content"]:
            expected |= {"400", "422"}
        assert expected <= set(operation["responses"]), (path, method)


def test_workflow_operations_answer_202_with_location(document: dict[str, Any]) -> None:
    """An operation that starts a workflow answers 202 with the operation and a required
    Location, or 200 with Prefer: wait; and every 202 with an operation is one of them
    (or the cancel, which answers for a running workflow)."""
    operation_schema = {"$ref": "#/components/schemas/Operation"}
    workflows = 0
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        accepted = responses.get("202")
        answers_operation = (
            accepted is not None
            and accepted["content"]["application/json"]["schema"] == operation_schema
        )
        if WORKFLOW_EXTENSION not in operation:
            assert not answers_operation or operation["operationId"] == "cancelOperation", (
                path,
                method,
            )
            continue
        workflows += 1
        assert re.fullmatch(r"\w+_workflow", operation[WORKFLOW_EXTENSION]), path
        assert answers_operation, (path, method)
        location = _resolve(document, accepted["headers"]["Location"])
        assert location["required"] is True, (path, method)
        assert "200" in responses, (path, method)
        names = {p["name"] for p in _parameters(document, operation)}
        assert "Prefer" in names, (path, method)
    assert workflows >= 10


def test_conventions_apply_to_a_new_route() -> None:
    """A route module that describes only its own answers still gets the shared ones."""
    operation: dict[str, Any] = {
        "operationId": "newThing",
        "requestBody": {"content": {"application/json": {"schema": {}}}},
        "responses": {"201": {"description": "Made"}},
    }
    _apply_conventions("/v1/things", "post", operation)
    assert {"400", "401", "409", "413", "415", "422", "429", "503"} <= set(operation["responses"])
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in operation["parameters"]
    assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]


def test_operations_routes_follow_the_contract(document: dict[str, Any]) -> None:
    """The operations API: a filtered, cursor-paginated list; the result; a stream token;
    events resumable by Last-Event-ID and readable with the stream token; cancel with
    Prefer."""
    paths = document["paths"]
    listing = paths["/v1/operations"]["get"]
    names = {p["name"] for p in _parameters(document, listing)}
    assert names == {"type", "status", "since", "until", "limit", "cursor"}
    page = document["components"]["schemas"]["OperationList"]
    assert set(page["required"]) == {"items", "next_cursor"}
    events = paths["/v1/operations/{id}/events"]["get"]
    assert {"Last-Event-ID", "last_event_id"} <= {p["name"] for p in _parameters(document, events)}
    assert {"streamToken": []} in events["security"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert "201" in paths["/v1/operations/{id}/stream-token"]["post"]["responses"]
    cancel = paths["/v1/operations/{id}/cancel"]["post"]
    assert "Prefer" in {p["name"] for p in _parameters(document, cancel)}
    assert {"200", "202", "409"} <= set(cancel["responses"])
    assert "409" in paths["/v1/operations/{id}/result"]["get"]["responses"]


def test_create_tenant_body_refuses_unknown_fields(document: dict[str, Any]) -> None:
    """The documented request body matches the API: closed objects, required fields."""
    schemas = document["components"]["schemas"]
    body = schemas["CreateTenantIn"]
    assert body["additionalProperties"] is False
    assert set(body["required"]) == {"slug", "display_name", "admin"}
    assert body["properties"]["slug"]["pattern"]


def test_components_are_of_their_kind(document: dict[str, Any]) -> None:
    """Reusable responses are response objects and schemas are schemas, not mixed up."""
    components = document["components"]
    for name, response in components["responses"].items():
        assert "description" in response, name
    for name, schema in components["schemas"].items():
        assert "description" not in schema or "type" in schema or "$ref" in schema, name


async def test_served_document_is_the_built_one(document: dict[str, Any]) -> None:
    """GET /openapi.json serves this document, without a token."""
    from aiohttp.test_utils import make_mocked_request

    from adx_api.openapi import openapi_json

    response = await openapi_json(make_mocked_request("GET", "/openapi.json"))
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.text is not None
    import json

    assert json.loads(response.text) == document
