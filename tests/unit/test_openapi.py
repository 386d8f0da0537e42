"""The OpenAPI document describes exactly the routes the API serves."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from adx_api.app import create_app
from adx_api.openapi import build_document
from adx_core.settings import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


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


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


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
    """Every {param} in a path is declared as a required path parameter of its operations."""
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            declared = {
                p["name"]
                for p in operation.get("parameters", [])
                if p.get("in") == "path" and p.get("required")
            }
            assert declared == names, (path, method)


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    """operationIds, where given, are unique (client generators rely on it)."""
    ids = [
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if "operationId" in op
    ]
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
    """Every documented 4xx/5xx answer is the RFC 9457 problem response."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and (path, status) != ("/readyz", "503"):
                    assert response == {"$ref": "#/components/responses/Problem"}, (
                        path,
                        method,
                        status,
                    )


def test_create_tenant_body_refuses_unknown_fields(document: dict[str, Any]) -> None:
    """The documented request body matches the API: closed objects, required fields."""
    schemas = document["components"]["schemas"]
    body = schemas["CreateTenantIn"]
    assert body["additionalProperties"] is False
    assert set(body["required"]) == {"slug", "display_name", "admin"}
    assert body["properties"]["slug"]["pattern"]
    assert document["openapi"].startswith("3.1")


def test_components_are_of_their_kind() -> None:
    """Reusable responses are response objects and schemas are schemas, not mixed up."""
    components = build_document()["components"]
    for name, response in components["responses"].items():
        assert "description" in response, name
    for name, schema in components["schemas"].items():
        assert "description" not in schema or "type" in schema or "$ref" in schema, name
