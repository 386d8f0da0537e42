"""CORS for the frontends' origins: preflights for every route, exposed headers on every
answer (streams included), and the routes with OPTIONS of their own left working."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from temporalio.client import Client as TemporalClient
from temporalio.worker import Worker

from adx_api.app import create_app
from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import BODY, auth

Api = TestClient[web.Request, web.Application]

FRONTEND = "https://app.adx.test"
OTHER = "https://evil.example"


@pytest.fixture
async def cors_api(
    settings: Settings, temporal_client: TemporalClient, sessions: Sessions
) -> AsyncIterator[Api]:
    configured = settings.model_copy(
        update={"cors_allowed_origins": (FRONTEND, "http://localhost:5173")}
    )
    app = create_app(configured, temporal=temporal_client, sessions=sessions)
    async with TestClient(TestServer(app)) as client:
        yield client


def _preflight(method: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {
        "Origin": FRONTEND,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.mark.parametrize(
    ("path", "method", "methods"),
    [
        ("/v1/groups", "POST", {"get", "head", "post", "options"}),
        (f"/v1/operations/op-{uuid.uuid4()}/cancel", "POST", {"post", "options"}),
        (f"/v1/users/{uuid.uuid4()}", "PATCH", {"get", "head", "patch", "delete", "options"}),
        (f"/v1/uploads/{uuid.uuid4()}", "PATCH", {"get", "head", "patch", "delete", "options"}),
    ],
)
async def test_a_preflight_from_an_allowed_origin_is_answered(
    cors_api: Api, path: str, method: str, methods: set[str]
) -> None:
    response = await cors_api.options(
        path, headers=_preflight(method, "authorization, content-type, idempotency-key, prefer")
    )
    assert response.status == 204, await response.text()
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == FRONTEND  # echoed, never "*"
    assert _listed(headers["Access-Control-Allow-Methods"]) == methods
    allowed = _listed(headers["Access-Control-Allow-Headers"])
    assert {"authorization", "content-type", "idempotency-key", "prefer"} <= allowed
    assert {"last-event-id", "if-none-match", "range", "tus-resumable"} <= allowed
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "origin" in _listed(headers["Vary"])
    assert "Access-Control-Allow-Credentials" not in headers


async def test_a_preflight_from_another_origin_is_refused(cors_api: Api) -> None:
    response = await cors_api.options("/v1/groups", headers={**_preflight("POST"), "Origin": OTHER})
    assert response.status == 403
    assert response.content_type == "application/problem+json"
    assert (await response.json())["type"].endswith("/origin-not-allowed")
    assert not [name for name in response.headers if name.lower().startswith("access-control")]


async def test_without_configured_origins_there_is_no_cors(api: Api) -> None:
    preflight = await api.options("/v1/groups", headers=_preflight("POST"))
    assert preflight.status == 403
    answer = await api.get("/healthz", headers={"Origin": FRONTEND})
    assert answer.status == 200
    assert "Access-Control-Allow-Origin" not in answer.headers


async def test_a_preflight_for_an_unknown_path_is_a_404(cors_api: Api) -> None:
    response = await cors_api.options("/v1/nothing-here", headers=_preflight("GET"))
    assert response.status == 404


async def test_answers_to_an_allowed_origin_expose_the_api_headers(
    cors_api: Api, token: TokenFactory
) -> None:
    ok = await cors_api.get("/v1/groups", headers={**auth(token()), "Origin": FRONTEND})
    assert ok.status == 200, await ok.text()
    assert ok.headers["Access-Control-Allow-Origin"] == FRONTEND
    exposed = _listed(ok.headers["Access-Control-Expose-Headers"])
    assert {
        "location",
        "preference-applied",
        "retry-after",
        "x-request-id",
        "etag",
        "content-range",
        "idempotent-replayed",
        "ratelimit",
        "ratelimit-policy",
        "upload-offset",
        "upload-length",
        "tus-resumable",
        "tus-version",
    } <= exposed
    assert "origin" in _listed(ok.headers["Vary"])
    # A problem is readable by the frontend too (here: no token).
    refused = await cors_api.get("/v1/groups", headers={"Origin": FRONTEND})
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "www-authenticate" in _listed(refused.headers["Access-Control-Expose-Headers"])


async def test_another_origin_is_served_without_cors_headers(
    cors_api: Api, token: TokenFactory
) -> None:
    """The browser, not the server, withholds the answer from the page."""
    response = await cors_api.get("/v1/groups", headers={**auth(token()), "Origin": OTHER})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Expose-Headers" not in response.headers
    assert "origin" in _listed(response.headers["Vary"])  # caches must not mix the two


async def test_a_stream_carries_the_cors_headers(
    cors_api: Api, token: TokenFactory, tenants_worker: Worker
) -> None:
    """SSE is prepared by its handler before any middleware sees it."""
    headers = auth(token())
    started = await cors_api.post(
        "/v1/tenants", json=BODY, headers={**headers, "Prefer": "wait=20"}
    )
    assert started.status == 200, await started.text()
    operation = await started.json()
    events = await cors_api.get(
        f"/v1/operations/{operation['id']}/events", headers={**headers, "Origin": FRONTEND}
    )
    assert events.status == 200
    assert events.content_type == "text/event-stream"
    assert events.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "x-request-id" in _listed(events.headers["Access-Control-Expose-Headers"])
    assert "event: completed" in await events.text()  # the stream ends after the final event


async def test_tus_discovery_and_its_preflight_both_work(cors_api: Api) -> None:
    # tus-js-client's capability request: no Access-Control-Request-Method, so the route's
    # own OPTIONS answers it.
    discovery = await cors_api.options(
        "/v1/uploads", headers={"Origin": FRONTEND, "Tus-Resumable": "1.0.0"}
    )
    assert discovery.status == 204
    assert discovery.headers["Tus-Version"] == "1.0.0"
    assert "creation" in discovery.headers["Tus-Extension"]
    assert int(discovery.headers["Tus-Max-Size"]) > 0
    assert discovery.headers["Access-Control-Allow-Origin"] == FRONTEND
    # Without an Origin (a non-browser client), exactly as before.
    plain = await cors_api.options("/v1/uploads")
    assert plain.status == 204
    assert plain.headers["Tus-Version"] == "1.0.0"
    # A browser's preflight for the create request.
    preflight = await cors_api.options(
        "/v1/uploads",
        headers=_preflight("POST", "authorization, tus-resumable, upload-length, upload-metadata"),
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert {"post", "options"} <= _listed(preflight.headers["Access-Control-Allow-Methods"])
    assert {"upload-length", "upload-metadata", "upload-defer-length"} <= _listed(
        preflight.headers["Access-Control-Allow-Headers"]
    )


async def test_the_codec_keeps_its_own_cors(cors_api: Api, settings: Settings) -> None:
    """The Temporal UI's origins, configured apart; the frontends' list does not apply."""
    ui = settings.codec_allowed_origins[0]
    preflight = await cors_api.options(
        "/codec/decode", headers={"Origin": ui, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ui
    frontend = await cors_api.options("/codec/decode", headers=_preflight("POST"))
    assert "Access-Control-Allow-Origin" not in frontend.headers
