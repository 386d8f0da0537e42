"""Bad and hostile input to the users endpoints: each is a 4xx problem and changes nothing
(no row, no workflow on the users task queue)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from temporalio.client import Client

from adx_core.settings import Settings
from tests.integration.users.conftest import World, bearer

Api = TestClient[web.Request, web.Application]

GOOD_ONBOARDING = {"email": "carol@example.test", "name": "Carol", "role": "member"}
HOSTILE_TEXT = [
    "Carol\r\nBcc: everyone@example.test",
    "Carol\x00",
    "\x1b[31mred",
    "x" * 201,
    "",
    "   ",
]
BAD_EMAILS = [
    "not-an-email",
    "a@b",
    "carol@example.test\r\nBcc: x@example.test",
    "carol@@example.test",
    "x" * 65 + "@example.test",
    "carol@" + "a" * 320 + ".test",
    123,
    None,
]
BAD_IDS = [
    "not-a-uuid",
    "12345",
    "{" + str(uuid.UUID(int=1)) + "}",
    "urn:uuid:" + str(uuid.UUID(int=1)),
    str(uuid.UUID(int=1)).upper(),
    "%00",
    "..%2f..%2fetc",
]


class Scene:
    def __init__(self, world: World, tenant: uuid.UUID, admin: uuid.UUID, bob: uuid.UUID) -> None:
        self.world, self.tenant, self.admin, self.bob = world, tenant, admin, bob
        self.token = world.token(admin, tenant, "tenant-admin")
        self.headers = bearer(self.token)


@pytest.fixture
async def scene(world: World, temporal_client: Client, settings: Settings) -> AsyncIterator[Scene]:
    tenant = await world.tenant("acme")
    admin = await world.user("ada@example.test", [(tenant, "tenant-admin")], active=tenant)
    bob = await world.user("bob@example.test", [(tenant, "member")], active=tenant)
    before = await world.state()
    yield Scene(world, tenant, admin, bob)
    assert await world.state() == before
    query = f'TaskQueue="{settings.task_queue("users")}"'
    assert [wf.id async for wf in temporal_client.list_workflows(query)] == []


async def expect_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    assert "Traceback" not in str(body)
    return body


BODY_ENDPOINTS = [
    ("post", "/v1/users"),
    ("patch", "/v1/users/{bob}"),
    ("post", "/v1/me/active-tenant"),
]


def _url(path: str, scene: Scene) -> str:
    return path.format(bob=scene.bob)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
async def test_malformed_json(method: str, path: str, api: Api, scene: Scene) -> None:
    for raw in (b"{", b"[[[[" * 10_000, b"\xff\xfe", b"", b'{"name": "x",}'):
        response = await api.request(
            method,
            _url(path, scene),
            data=raw,
            headers={**scene.headers, "Content-Type": "application/json"},
        )
        await expect_problem(response, 400)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
async def test_wrong_content_type(method: str, path: str, api: Api, scene: Scene) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = await api.request(
            method,
            _url(path, scene),
            data=b'{"name": "x"}',
            headers={**scene.headers, "Content-Type": content_type},
        )
        await expect_problem(response, 415)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
async def test_oversized_body(
    method: str, path: str, api: Api, scene: Scene, settings: Settings
) -> None:
    huge = b'{"name": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    response = await api.request(
        method,
        _url(path, scene),
        data=huge,
        headers={**scene.headers, "Content-Type": "application/json"},
    )
    await expect_problem(response, 413)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v1/users", {**GOOD_ONBOARDING, "is_admin": True}),
        ("post", "/v1/users", {**GOOD_ONBOARDING, "tenant_id": str(uuid.uuid4())}),
        ("post", "/v1/users", {**GOOD_ONBOARDING, "user_id": str(uuid.uuid4())}),
        ("patch", "/v1/users/{bob}", {"name": "Bob", "email": "mallory@example.test"}),
        ("patch", "/v1/users/{bob}", {"tenant_id": str(uuid.uuid4())}),
        ("post", "/v1/me/active-tenant", {"tenant_id": str(uuid.uuid4()), "user_id": "x"}),
        ("post", "/v1/users", ["not", "an", "object"]),
        ("patch", "/v1/users/{bob}", "a string"),
        ("post", "/v1/me/active-tenant", 17),
    ],
)
async def test_unknown_fields_and_wrong_shapes(
    method: str, path: str, body: Any, api: Api, scene: Scene
) -> None:
    response = await api.request(method, _url(path, scene), json=body, headers=scene.headers)
    await expect_problem(response, 422)


@pytest.mark.parametrize("email", BAD_EMAILS)
async def test_bad_email(email: Any, api: Api, scene: Scene) -> None:
    response = await api.post(
        "/v1/users", json={**GOOD_ONBOARDING, "email": email}, headers=scene.headers
    )
    await expect_problem(response, 422)


@pytest.mark.parametrize("role", ["platform-admin", "owner", "ADMIN", "", None, 1, ["member"]])
async def test_bad_role(role: Any, api: Api, scene: Scene) -> None:
    for method, path, body in (
        ("post", "/v1/users", {**GOOD_ONBOARDING, "role": role}),
        ("patch", f"/v1/users/{scene.bob}", {"role": role}),
    ):
        response = await api.request(method, path, json=body, headers=scene.headers)
        await expect_problem(response, 422)


@pytest.mark.parametrize("name", HOSTILE_TEXT)
async def test_hostile_names(name: str, api: Api, scene: Scene) -> None:
    for method, path, body in (
        ("post", "/v1/users", {**GOOD_ONBOARDING, "name": name}),
        ("patch", f"/v1/users/{scene.bob}", {"name": name}),
    ):
        response = await api.request(method, path, json=body, headers=scene.headers)
        await expect_problem(response, 422)


@pytest.mark.parametrize("body", [{}, {"name": None}, {"status": "deleted"}, {"status": ""}])
async def test_patch_needs_a_valid_change(body: Any, api: Api, scene: Scene) -> None:
    response = await api.patch(f"/v1/users/{scene.bob}", json=body, headers=scene.headers)
    await expect_problem(response, 422)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tenant_id": "acme"},
        {"tenant_id": str(uuid.uuid4()), "tenant": "acme"},
        {"tenant": "ACME"},
        {"tenant": "acme\r\n"},
        {"tenant": "a" * 1000},
        {"tenant": "../platform"},
        {"tenant_id": 42},
    ],
)
async def test_bad_switch_targets(body: Any, api: Api, scene: Scene) -> None:
    response = await api.post("/v1/me/active-tenant", json=body, headers=scene.headers)
    await expect_problem(response, 422)


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_non_uuid_ids_are_not_found(bad_id: str, api: Api, scene: Scene) -> None:
    path = f"/v1/users/{bad_id}"
    await expect_problem(await api.get(path, headers=scene.headers), 404)
    await expect_problem(await api.patch(path, json={"name": "X"}, headers=scene.headers), 404)
    await expect_problem(await api.delete(path, headers=scene.headers), 404)


@pytest.mark.parametrize("key", ["", "with space", "x" * 201, "caf\u00e9", "tab\there"])
async def test_bad_idempotency_keys(key: str, api: Api, scene: Scene) -> None:
    response = await api.post(
        "/v1/users",
        json=GOOD_ONBOARDING,
        headers={**scene.headers, "Idempotency-Key": key.encode("utf-8").decode("latin-1")},
    )
    await expect_problem(response, 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/me"),
        ("post", "/v1/me/active-tenant"),
        ("get", "/v1/users/{bob}"),
        ("post", "/v1/users"),
        ("patch", "/v1/users/{bob}"),
        ("delete", "/v1/users/{bob}"),
    ],
)
async def test_no_or_bad_token(method: str, path: str, api: Api, scene: Scene) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        response = await api.request(method, _url(path, scene), json={}, headers=headers)
        await expect_problem(response, 401)


async def test_a_token_without_a_user_identity_cannot_switch(
    api: Api, scene: Scene, token: Any
) -> None:
    from adx_core.auth import Role

    anonymous = token(Role.MEMBER, str(scene.tenant), user_id="ada@example.test")
    response = await api.post(
        "/v1/me/active-tenant", json={"tenant": "acme"}, headers=bearer(anonymous)
    )
    await expect_problem(response, 403)
    me = await api.get("/v1/me", headers=bearer(anonymous))
    assert me.status == 200
    assert (await me.json())["memberships"] == []
