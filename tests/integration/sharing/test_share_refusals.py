"""Who may not share, and bodies that are malformed, oversized or hostile: each is a 4xx
problem, and no workflow starts (no share row appears, the workflows-started counter stays)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from adx_core.contracts.files import FILE_SHARING_WORKFLOW
from tests.integration.sharing.conftest import Api, Scene


def _started() -> float:
    value = REGISTRY.get_sample_value(
        "adx_workflows_started_total", {"workflow_type": FILE_SHARING_WORKFLOW}
    )
    return value or 0.0


@pytest.fixture
async def nothing_started(scene: Scene) -> AsyncIterator[None]:
    before = _started()
    yield
    assert _started() == before
    assert await scene.world.rows("SELECT id FROM file_shares") == []


def _in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


USER = {"kind": "user", "id": str(uuid.UUID(int=7))}
BAD_BODIES: list[Any] = [
    {},
    {"link": False},
    {"grantees": []},
    {"grantees": [USER], "link": True, "expires_in_seconds": 60},
    {"grantees": [USER, USER]},
    {"grantees": [{"kind": "user", "id": str(uuid.UUID(int=i))} for i in range(51)]},
    {"grantees": [{"kind": "tenant", "id": str(uuid.UUID(int=1))}]},
    {"grantees": [{"kind": "user", "id": "not-a-uuid"}]},
    {"grantees": [{"kind": "user", "id": str(uuid.UUID(int=1)), "role": "owner"}]},
    {"grantees": [USER], "role": "owner"},
    {"grantees": [USER], "password": "secret-enough"},
    {"grantees": [USER], "notify": ["a@example.test"]},
    {"grantees": [USER], "unknown": 1},
    {"grantees": [USER], "message": "line\r\nBcc: everyone@example.test"},
    {"grantees": [USER], "message": "x" * 501},
    {"grantees": [USER], "message": "\x1b[31mred"},
    {"link": "true", "expires_in_seconds": 60},
    {"link": True},
    {"link": True, "role": "editor", "expires_in_seconds": 60},
    {"link": True, "expires_in_seconds": 0},
    {"link": True, "expires_in_seconds": "60"},
    {"link": True, "expires_in_seconds": 91 * 86_400},
    {"link": True, "expires_at": _in(-1)},
    {"link": True, "expires_at": _in(91)},
    {"link": True, "expires_at": "2030-01-01T00:00:00"},  # no time zone
    {"link": True, "expires_at": _in(1), "expires_in_seconds": 60},
    {"link": True, "expires_in_seconds": 60, "password": "short"},
    {"link": True, "expires_in_seconds": 60, "password": "x" * 129},
    {"link": True, "expires_in_seconds": 60, "password": "nul\x00byte-pass"},
    {"link": True, "expires_in_seconds": 60, "notify": ["not-an-email"]},
    {"link": True, "expires_in_seconds": 60, "notify": ["a@example.test\r\nBcc: b@x.test"]},
    {"link": True, "expires_in_seconds": 60, "notify": [f"p{i}@example.test" for i in range(21)]},
    [],
    "share",
    None,
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
async def test_invalid_bodies_are_422(
    api: Api, scene: Scene, nothing_started: None, body: Any
) -> None:
    response = await api.post(
        f"/v1/files/{scene.file.id}/shares",
        data=json.dumps(body),  # json=None would send no body at all
        headers={**scene.headers("olivia"), "Content-Type": "application/json"},
    )
    assert response.status == 422, await response.text()
    problem = await response.json()
    assert problem["type"].endswith("/validation")
    assert "\x1b" not in await response.text()


async def test_malformed_oversized_and_foreign_bodies(
    api: Api, scene: Scene, nothing_started: None
) -> None:
    path = f"/v1/files/{scene.file.id}/shares"
    headers = scene.headers("olivia")
    cases = [
        (b'{"link": tru', "application/json", 400),
        (b"[" * 60_000, "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b'{"link": true}', "text/plain", 415),
        (b"link=true", "application/x-www-form-urlencoded", 415),
        (b'{"message": "' + b"x" * (2 * 1024 * 1024) + b'"}', "application/json", 413),
    ]
    for data, content_type, status in cases:
        response = await api.post(
            path, data=data, headers={**headers, "Content-Type": content_type}
        )
        assert response.status == status, (data[:20], await response.text())
        assert response.content_type == "application/problem+json"
    bad_key = await api.post(
        path,
        json={"link": True, "expires_in_seconds": 60},
        headers={**headers, "Idempotency-Key": "has space"},
    )
    assert bad_key.status == 400


async def test_who_may_not_share(api: Api, scene: Scene, nothing_started: None) -> None:
    body = {"grantees": [{"kind": "user", "id": str(scene.user("bob"))}]}

    def post(file_id: uuid.UUID, who: str) -> Any:
        return api.post(f"/v1/files/{file_id}/shares", json=body, headers=scene.headers(who))

    # A viewer's role lacks files.share.
    assert (await post(scene.file.id, "vic")).status == 403
    # A member without a grant on the file does not see it.
    assert (await post(scene.file.id, "carol")).status == 404
    # A viewer grant on the file is not enough to share it.
    await scene.world.execute(
        "INSERT INTO file_permissions (id, tenant_id, file_id, principal_kind, principal_id,"
        " role) VALUES (:id, :t, :f, 'user', :u, 'viewer')",
        id=uuid.uuid4(),
        t=scene.acme,
        f=scene.file.id,
        u=scene.user("carol"),
    )
    assert (await post(scene.file.id, "carol")).status == 403
    # Another tenant's file, from either side, is not found.
    assert (await post(scene.other_file.id, "olivia")).status == 404
    assert (await post(scene.file.id, "eve")).status == 404
    assert (await post(scene.other_file.id, "ada")).status == 404
    # A file still being scanned cannot be shared.
    assert (await post(scene.scanning.id, "olivia")).status == 409
    # No bearer token; ids that are not ids.
    unauthenticated = await api.post(f"/v1/files/{scene.file.id}/shares", json=body)
    assert unauthenticated.status == 401
    for bad in ("not-a-uuid", "{" + str(scene.file.id) + "}", str(scene.file.id)[:-1]):
        response = await api.post(
            f"/v1/files/{bad}/shares", json=body, headers=scene.headers("olivia")
        )
        assert response.status == 404, bad


async def test_listing_needs_owner_or_editor_access(api: Api, scene: Scene) -> None:
    path = f"/v1/files/{scene.file.id}/shares"
    assert (await api.get(path, headers=scene.headers("olivia"))).status == 200
    assert (await api.get(path, headers=scene.headers("ada"))).status == 200
    assert (await api.get(path, headers=scene.headers("bob"))).status == 404
    assert (await api.get(path, headers=scene.headers("eve"))).status == 404
    assert (await api.get(path)).status == 401
    missing = f"/v1/files/{scene.file.id}/shares/{uuid.uuid4()}"
    assert (await api.delete(missing, headers=scene.headers("olivia"))).status == 404
