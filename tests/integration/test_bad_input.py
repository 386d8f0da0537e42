"""Bad and hostile input through the HTTP API: every one is a 4xx problem and changes nothing.

"Nothing" is checked three ways: no tenant row appears (as the owner, past RLS), the
API's workflows-started counter does not move, and the test's own task queue has no
workflows (visibility is eventually consistent, so that last one is only a backstop).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from adx_api.problems import TYPE_BASE
from adx_core.auth import Role, mint_token
from adx_core.contracts import search
from adx_core.contracts.tenants import (
    PLATFORM_TENANT_ID,
    TENANT_PROVISIONING_WORKFLOW,
    Plan,
    TenantAdmin,
    TenantCreationRequest,
)
from adx_core.settings import Settings
from tests.conftest import TokenFactory

Api = TestClient[web.Request, web.Application]

BODY: dict[str, Any] = {
    "slug": "acme",
    "display_name": "Acme Inc",
    "plan": "pro",
    "admin": {"email": "ada@acme.test", "name": "Ada"},
}


class NothingChanged:
    """A snapshot of everything a refused request must leave alone."""

    def __init__(self, owner_engine: AsyncEngine, temporal: Client, settings: Settings) -> None:
        self._engine = owner_engine
        self._temporal = temporal
        self._settings = settings
        self._before: tuple[int, int, float] = (0, 0, 0.0)

    async def _state(self) -> tuple[int, int, float]:
        async with self._engine.connect() as conn:
            tenants = (await conn.execute(text("SELECT count(*) FROM tenants"))).scalar()
            audit = (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar()
        started = REGISTRY.get_sample_value(
            "adx_workflows_started_total", {"workflow_type": TENANT_PROVISIONING_WORKFLOW}
        )
        return int(tenants or 0), int(audit or 0), started or 0.0

    async def snapshot(self) -> None:
        self._before = await self._state()
        assert self._before[:2] == (1, 0), "only the platform tenant should exist"

    async def check(self) -> None:
        assert await self._state() == self._before
        query = f'TaskQueue="{self._settings.task_queue("tenants")}"'
        assert [wf.id async for wf in self._temporal.list_workflows(query)] == []


@pytest.fixture
async def unchanged(
    owner_engine: AsyncEngine, temporal_client: Client, settings: Settings
) -> AsyncIterator[NothingChanged]:
    guard = NothingChanged(owner_engine, temporal_client, settings)
    await guard.snapshot()
    yield guard
    await guard.check()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_problem(response: Any, status: int, kind: str | None = None) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with the given status and a type URI."""
    raw = await response.text()
    assert response.status == status, raw
    assert response.content_type == "application/problem+json", raw
    body: dict[str, Any] = json.loads(raw)
    assert body["status"] == status
    assert body["type"].startswith(TYPE_BASE)
    assert body["title"]
    if kind is not None:
        assert body["type"] == TYPE_BASE + kind, body
    return body


def _raw_token(settings: Settings, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(uuid.uuid4()),
        "tenant_id": PLATFORM_TENANT_ID,
        "roles": [Role.PLATFORM_ADMIN.value],
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    assert settings.jwt_secret is not None
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm="HS256")


# -- authentication ----------------------------------------------------------------------


async def test_missing_token_is_401(api: Api, unchanged: NothingChanged) -> None:
    """No Authorization header: 401 with a Bearer challenge."""
    response = await api.post("/v1/tenants", json=BODY)
    await assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer    ", "Token abc", "Basic dXNlcjpwYXNzd29yZA==", "Bearerabc", "abc"],
)
async def test_malformed_authorization_is_401(
    api: Api, unchanged: NothingChanged, header: str
) -> None:
    """Anything but ``Bearer <token>`` is refused before the body is looked at."""
    response = await api.post("/v1/tenants", json=BODY, headers={"Authorization": header})
    await assert_problem(response, 401, "unauthenticated")


async def test_token_without_scheme_is_401(
    api: Api, token: TokenFactory, unchanged: NothingChanged
) -> None:
    """A valid token sent without the Bearer scheme is still refused."""
    response = await api.post("/v1/tenants", json=BODY, headers={"Authorization": token()})
    await assert_problem(response, 401, "unauthenticated")


async def test_expired_token_is_401(
    api: Api, token: TokenFactory, settings: Settings, unchanged: NothingChanged
) -> None:
    """A token expired beyond the leeway is refused, and says so."""
    expired = token(ttl_seconds=-(settings.jwt_leeway_seconds + 60))
    response = await api.post("/v1/tenants", json=BODY, headers=auth(expired))
    body = await assert_problem(response, 401, "unauthenticated")
    assert body["reason"] == "expired"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_token_signed_with_another_secret_is_401(
    api: Api, settings: Settings, unchanged: NothingChanged
) -> None:
    """A well-formed token from someone holding a different secret is refused."""
    other = settings.model_copy(
        update={"jwt_secret": SecretStr("someone-elses-secret-that-is-long-enough")}
    )
    forged = mint_token(
        other, user_id=str(uuid.uuid4()), tenant_id=PLATFORM_TENANT_ID, roles=[Role.PLATFORM_ADMIN]
    )
    response = await api.post("/v1/tenants", json=BODY, headers=auth(forged))
    body = await assert_problem(response, 401, "unauthenticated")
    assert body["reason"] == "bad_signature"


@pytest.mark.parametrize(
    "claims",
    [
        {"roles": ["root"]},
        {"roles": ["platform-admin", "god"]},
        {"roles": []},
        {"tenant_id": "platform"},
        {"tenant_id": "../../etc"},
        {"sub": ""},
        {"aud": "another-api"},
        {"iss": "someone-else"},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
async def test_token_with_bad_claims_is_401(
    api: Api, settings: Settings, unchanged: NothingChanged, claims: dict[str, Any]
) -> None:
    """Correctly signed tokens with unknown roles, non-UUID tenants or foreign audiences are
    refused."""
    response = await api.post(
        "/v1/tenants", json=BODY, headers=auth(_raw_token(settings, **claims))
    )
    body = await assert_problem(response, 401, "unauthenticated")
    assert body["reason"] == "invalid"


@pytest.mark.parametrize("role", [Role.TENANT_ADMIN, Role.MEMBER, Role.VIEWER])
async def test_only_platform_admins_create_tenants(
    api: Api, token: TokenFactory, unchanged: NothingChanged, role: Role
) -> None:
    """Every other role gets 403 on POST /v1/tenants, even with a perfect body."""
    response = await api.post("/v1/tenants", json=BODY, headers=auth(token(role=role)))
    await assert_problem(response, 403, "forbidden")


# -- the body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{", b"{'slug': 'acme'}", b"", b"nul", b'{"slug": "acme",}', b"\xff\xfe{}", b'{"a": "\xff"}'],
)
async def test_malformed_json_is_400(
    api: Api, token: TokenFactory, unchanged: NothingChanged, raw: bytes
) -> None:
    """A body that is not JSON (or not UTF-8) is a 400 malformed-body problem."""
    response = await api.post(
        "/v1/tenants",
        data=raw,
        headers={**auth(token()), "Content-Type": "application/json"},
    )
    await assert_problem(response, 400, "malformed-body")


async def test_deeply_nested_json_is_400(
    api: Api, token: TokenFactory, unchanged: NothingChanged
) -> None:
    """JSON nested past the parser's depth limit is malformed, not an internal error."""
    depth = 20_000
    response = await api.post(
        "/v1/tenants",
        data=b"[" * depth + b"]" * depth,
        headers={**auth(token()), "Content-Type": "application/json"},
    )
    await assert_problem(response, 400, "malformed-body")


@pytest.mark.parametrize("document", [[BODY], "acme", 42, None, True, []])
async def test_json_that_is_not_an_object_is_422(
    api: Api, token: TokenFactory, unchanged: NothingChanged, document: Any
) -> None:
    """An array, string, number or null instead of an object fails validation."""
    response = await api.post(
        "/v1/tenants",
        data=json.dumps(document),
        headers={**auth(token()), "Content-Type": "application/json"},
    )
    await assert_problem(response, 422, "validation")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/xml", "text/json"],
)
async def test_wrong_content_type_is_415(
    api: Api, token: TokenFactory, unchanged: NothingChanged, content_type: str | None
) -> None:
    """Only application/json bodies are read; the JSON itself being fine does not help."""
    headers = auth(token())
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await api.post(
        "/v1/tenants",
        data=json.dumps(BODY).encode(),
        headers=headers,
        skip_auto_headers={"Content-Type"},
    )
    await assert_problem(response, 415, "unsupported-media-type")


async def test_json_with_charset_is_accepted_as_json(
    api: Api, token: TokenFactory, unchanged: NothingChanged
) -> None:
    """``application/json; charset=utf-8`` is JSON: an invalid body in it is a 422, not 415."""
    response = await api.post(
        "/v1/tenants",
        data=json.dumps({**BODY, "slug": "A"}),
        headers={**auth(token()), "Content-Type": "application/json; charset=utf-8"},
    )
    await assert_problem(response, 422, "validation")


def _oversized(settings: Settings) -> bytes:
    padding = "x" * (settings.max_body_bytes + 1024)
    return json.dumps({**BODY, "display_name": padding}).encode()


async def test_oversized_body_with_length_is_413(
    api: Api, token: TokenFactory, settings: Settings, unchanged: NothingChanged
) -> None:
    """A Content-Length above ADX_MAX_BODY_BYTES is refused without reading the body."""
    response = await api.post(
        "/v1/tenants",
        data=_oversized(settings),
        headers={**auth(token()), "Content-Type": "application/json"},
    )
    await assert_problem(response, 413, "payload-too-large")


async def test_oversized_chunked_body_is_413(
    api: Api, token: TokenFactory, settings: Settings, unchanged: NothingChanged
) -> None:
    """A chunked body without a Content-Length is cut off at the limit too."""
    body = _oversized(settings)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = await api.post(
        "/v1/tenants",
        data=chunks(),
        headers={**auth(token()), "Content-Type": "application/json"},
    )
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request_info.headers
    await assert_problem(response, 413, "payload-too-large")


@pytest.mark.parametrize(
    "body",
    [
        {**BODY, "is_admin": True},
        {**BODY, "tenant_id": PLATFORM_TENANT_ID},
        {**BODY, "admin": {**BODY["admin"], "role": "platform-admin"}},
    ],
    ids=["top-level", "tenant_id", "nested"],
)
async def test_unknown_fields_are_422(
    api: Api, token: TokenFactory, unchanged: NothingChanged, body: dict[str, Any]
) -> None:
    """Extra fields are refused, at the top level and nested, and named by pointer."""
    response = await api.post("/v1/tenants", json=body, headers=auth(token()))
    problem = await assert_problem(response, 422, "validation")
    assert problem["errors"]
    assert all(error["pointer"].startswith("/") for error in problem["errors"])


@pytest.mark.parametrize(
    "missing", ["slug", "display_name", "admin"], ids=lambda name: f"without-{name}"
)
async def test_missing_fields_are_422(
    api: Api, token: TokenFactory, unchanged: NothingChanged, missing: str
) -> None:
    """Each required field must be present; the error points at it."""
    body = {k: v for k, v in BODY.items() if k != missing}
    response = await api.post("/v1/tenants", json=body, headers=auth(token()))
    problem = await assert_problem(response, 422, "validation")
    assert f"/{missing}" in [error["pointer"] for error in problem["errors"]]


@pytest.mark.parametrize(
    "slug",
    [
        "Acme",
        "ACME",
        "a" * 41,
        "ab",
        "1acme",
        "-acme",
        "acme-",
        "acme_corp",
        "acmé",
        "acme corp",
        "acme'; drop table tenants;--",
        "../acme",
        "",
        123,
        None,
    ],
)
async def test_invalid_slugs_are_422(
    api: Api, token: TokenFactory, unchanged: NothingChanged, slug: Any
) -> None:
    """Slugs must be 3-40 lower-case letters, digits and inner hyphens, starting with a
    letter; SQL or paths in them are just invalid."""
    response = await api.post("/v1/tenants", json={**BODY, "slug": slug}, headers=auth(token()))
    problem = await assert_problem(response, 422, "validation")
    assert [error["pointer"] for error in problem["errors"]] == ["/slug"]
    if isinstance(slug, str) and slug:
        assert slug not in json.dumps(problem)  # input is never echoed


@pytest.mark.parametrize("slug", ["platform", "admin", "api", "system", "www", "root"])
async def test_reserved_slugs_are_409(
    api: Api, token: TokenFactory, unchanged: NothingChanged, slug: str
) -> None:
    """Reserved slugs are a conflict, the platform tenant's own slug first of all."""
    response = await api.post("/v1/tenants", json={**BODY, "slug": slug}, headers=auth(token()))
    await assert_problem(response, 409, "conflict")


@pytest.mark.parametrize(
    "display_name",
    [
        "Acme\x00Inc",
        "Acme\nInc",
        "Acme\rX-Injected: 1",
        "Acme\x1b[31mRed",
        "Acme\x7f",
        "x" * 201,
        "",
        "   ",
        42,
        ["Acme"],
    ],
    ids=["nul", "newline", "cr", "escape", "del", "too-long", "empty", "blank", "number", "list"],
)
async def test_invalid_display_names_are_422(
    api: Api, token: TokenFactory, unchanged: NothingChanged, display_name: Any
) -> None:
    """Display names are 1-200 printable characters, without control characters."""
    response = await api.post(
        "/v1/tenants", json={**BODY, "display_name": display_name}, headers=auth(token())
    )
    problem = await assert_problem(response, 422, "validation")
    assert [error["pointer"] for error in problem["errors"]] == ["/display_name"]


@pytest.mark.parametrize(
    "admin",
    [
        {"email": "not-an-email", "name": "Ada"},
        {"email": "ada@acme", "name": "Ada"},
        {"email": "@acme.test", "name": "Ada"},
        {"email": "ada lovelace@acme.test", "name": "Ada"},
        {"email": "ada@acme.test\nBcc: eve@evil.test", "name": "Ada"},
        {"email": "ada@@acme.test", "name": "Ada"},
        {"email": f"{'a' * 65}@acme.test", "name": "Ada"},
        {"email": f"ada@{'a' * 320}.test", "name": "Ada"},
        {"email": "ada@acme.test", "name": "Ada\x00"},
        {"email": "ada@acme.test", "name": ""},
        {"email": "ada@acme.test"},
        "ada@acme.test",
        None,
    ],
)
async def test_invalid_admins_are_422(
    api: Api, token: TokenFactory, unchanged: NothingChanged, admin: Any
) -> None:
    """The admin needs a plausible e-mail and a printable name."""
    response = await api.post("/v1/tenants", json={**BODY, "admin": admin}, headers=auth(token()))
    problem = await assert_problem(response, 422, "validation")
    assert all(error["pointer"].startswith("/admin") for error in problem["errors"])


@pytest.mark.parametrize("plan", ["platinum", "PRO", "", None, 1, ["pro"]])
async def test_invalid_plans_are_422(
    api: Api, token: TokenFactory, unchanged: NothingChanged, plan: Any
) -> None:
    """The plan is one of free, pro, enterprise."""
    response = await api.post("/v1/tenants", json={**BODY, "plan": plan}, headers=auth(token()))
    problem = await assert_problem(response, 422, "validation")
    assert [error["pointer"] for error in problem["errors"]] == ["/plan"]


async def test_many_errors_are_capped(
    api: Api, token: TokenFactory, unchanged: NothingChanged
) -> None:
    """A body with hundreds of unknown fields answers with a bounded error list."""
    body = {**BODY, **{f"extra{i}": i for i in range(500)}}
    response = await api.post("/v1/tenants", json=body, headers=auth(token()))
    problem = await assert_problem(response, 422, "validation")
    assert len(problem["errors"]) <= 20


# -- operations and routes -----------------------------------------------------------------

BAD_IDS = [
    f"tenant-provisioning-{uuid.uuid4()}",  # well formed, unknown
    "..%2F..%2Fetc%2Fpasswd",
    "%2E%2E",
    "a" * 500,
    "Tenant-Provisioning-X",
    "x",
    "id%00null",
    "id%20with%20spaces",
    "%3Cscript%3E",
]


@pytest.mark.parametrize("operation_id", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("GET", "/events"), ("POST", "/cancel")]
)
async def test_unknown_or_malformed_operation_ids_are_404(
    api: Api,
    token: TokenFactory,
    unchanged: NothingChanged,
    operation_id: str,
    method: str,
    suffix: str,
) -> None:
    """Unknown and malformed ids look the same: 404, on status, events and cancel."""
    response = await api.request(
        method, f"/v1/operations/{operation_id}{suffix}", headers=auth(token())
    )
    await assert_problem(response, 404, "not-found")


@pytest.mark.parametrize("path", ["/v1/nope", "/", "/v2/tenants", "/v1/tenants/acme/../x"])
async def test_unknown_routes_are_404_problems(
    api: Api, token: TokenFactory, unchanged: NothingChanged, path: str
) -> None:
    """A route that does not exist is a 404 problem document, not aiohttp's HTML."""
    response = await api.get(path, headers=auth(token()))
    await assert_problem(response, 404, "not-found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/tenants", {"GET", "HEAD", "POST"}),
        ("DELETE", "/v1/tenants", {"GET", "HEAD", "POST"}),
        ("POST", "/v1/tenants/abc", {"GET", "HEAD", "DELETE"}),
        ("PUT", "/v1/operations/abc-123", {"GET", "HEAD"}),
        ("DELETE", "/v1/operations/abc-123", {"GET", "HEAD"}),
        ("GET", "/v1/operations/abc-123/cancel", {"POST"}),
        ("POST", "/v1/operations/abc-123/events", {"GET", "HEAD"}),
        ("POST", "/openapi.json", {"GET", "HEAD"}),
    ],
)
async def test_wrong_method_is_405_with_allow(
    api: Api,
    token: TokenFactory,
    unchanged: NothingChanged,
    method: str,
    path: str,
    allowed: set[str],
) -> None:
    """A known route with the wrong method is a 405 problem naming the allowed methods."""
    response = await api.request(method, path, headers=auth(token()), json=BODY)
    await assert_problem(response, 405, "method-not-allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


# -- hostile callers on a real operation ----------------------------------------------------


@pytest.fixture
async def pending_operation(temporal_client: Client, settings: Settings) -> AsyncIterator[str]:
    """A provisioning of the platform tenant's, started as the API starts it. No worker
    serves its queue, so it stays running for the whole test; it is terminated afterwards."""
    tenant_id = str(uuid.uuid4())
    handle = await temporal_client.start_workflow(
        TENANT_PROVISIONING_WORKFLOW,
        TenantCreationRequest(
            tenant_id=tenant_id,
            slug="acme",
            display_name="Acme Inc",
            plan=Plan.PRO,
            admin=TenantAdmin(email="ada@acme.test", name="Ada"),
            requested_by="bad-input-test",
        ),
        id=f"tenant-provisioning-{tenant_id}",
        task_queue=settings.task_queue("tenants"),
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(search.TENANT_ID, PLATFORM_TENANT_ID)]
        ),
    )
    yield handle.id
    await handle.terminate("test over")


async def _not_cancelled(temporal_client: Client, operation_id: str) -> None:
    handle = temporal_client.get_workflow_handle(operation_id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    events = [event.event_type async for event in handle.fetch_history_events()]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED not in events


async def test_viewer_cannot_cancel(
    api: Api, token: TokenFactory, temporal_client: Client, pending_operation: str
) -> None:
    """A viewer of the operation's own tenant gets 403 on cancel, and no cancellation
    reaches the workflow."""
    response = await api.post(
        f"/v1/operations/{pending_operation}/cancel", headers=auth(token(role=Role.VIEWER))
    )
    await assert_problem(response, 403, "forbidden")
    await _not_cancelled(temporal_client, pending_operation)


async def test_other_tenants_cannot_touch_an_operation(
    api: Api, token: TokenFactory, temporal_client: Client, pending_operation: str
) -> None:
    """Whatever their role, callers of another tenant get 404 on status and events, and
    404 (403 for a viewer, before any lookup) on cancel; the workflow is not cancelled."""
    path = f"/v1/operations/{pending_operation}"
    for role in Role:
        stranger = auth(token(role=role, tenant_id=str(uuid.uuid4())))
        await assert_problem(await api.get(path, headers=stranger), 404, "not-found")
        await assert_problem(await api.get(f"{path}/events", headers=stranger), 404, "not-found")
        cancel = await api.post(f"{path}/cancel", headers=stranger)
        await assert_problem(cancel, 403 if role is Role.VIEWER else 404)
    await _not_cancelled(temporal_client, pending_operation)


async def test_problem_answers_carry_the_request_id(api: Api, unchanged: NothingChanged) -> None:
    """Refused requests still get their correlation id back, for support."""
    response = await api.post("/v1/tenants", json=BODY, headers={"X-Request-ID": "bad-input-1"})
    await assert_problem(response, 401)
    assert response.headers["X-Request-ID"] == "bad-input-1"
