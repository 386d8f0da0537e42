"""Request size limits per route: JSON routes take ADX_MAX_BODY_BYTES, the codec more, and
the streamed upload routes are left to their plan-based limits."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client as TemporalClient

from adx_api.app import create_app
from adx_api.body_limits import CODEC_BODY_BYTES, ROUTE_BODY_LIMITS, STREAMED
from adx_core.auth import Role
from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import auth
from tests.support.tenancy import SeededTenant, seed_tenant

Api = TestClient[web.Request, web.Application]

LIMIT = 2048


@pytest.fixture
async def small_api(
    settings: Settings, temporal_client: TemporalClient, sessions: Sessions
) -> AsyncIterator[Api]:
    app = create_app(
        settings.model_copy(update={"max_body_bytes": LIMIT}),
        temporal=temporal_client,
        sessions=sessions,
    )
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def tenant(sessions: Sessions) -> SeededTenant:
    return await seed_tenant(sessions)


def _json(size: int, **fields: Any) -> bytes:
    """A JSON object of about ``size`` bytes."""
    return json.dumps({**fields, "padding": "x" * size}).encode()


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1024):
        yield body[start : start + 1024]


async def _counts(engine: AsyncEngine) -> tuple[int, int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM groups), (SELECT count(*) FROM tenants),"
                    " (SELECT count(*) FROM audit_log)"
                )
            )
        ).one()
    return row[0], row[1], row[2]


async def _assert_too_large(response: Any) -> None:
    assert response.status == 413, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["type"].endswith("/payload-too-large")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_json_is_413_and_changes_nothing(
    small_api: Api,
    tenant: SeededTenant,
    settings: Settings,
    token: TokenFactory,
    owner_engine: AsyncEngine,
    chunked: bool,
) -> None:
    admin = tenant.auth(settings, "admin")
    platform = auth(token())
    requests = [
        ("POST", "/v1/groups", admin, _json(LIMIT, name="big")),
        ("POST", "/v1/tenants", platform, _json(LIMIT, slug="big")),
        ("PATCH", f"/v1/users/{tenant.members['alice'].user_id}", admin, _json(LIMIT)),
        ("POST", f"/v1/files/{uuid.uuid4()}/shares", admin, _json(LIMIT, link=True)),
        ("POST", "/v1/storage/migrations", platform, _json(LIMIT, target="s3")),
    ]
    before = await _counts(owner_engine)
    for method, path, headers, body in requests:
        response = await small_api.request(
            method,
            path,
            data=_chunks(body) if chunked else body,
            headers={**headers, "Content-Type": "application/json"},
        )
        await _assert_too_large(response)
    assert await _counts(owner_engine) == before


async def test_a_body_within_the_limit_reaches_the_route(
    small_api: Api, tenant: SeededTenant, settings: Settings, owner_engine: AsyncEngine
) -> None:
    admin = tenant.auth(settings, "admin")
    body = json.dumps({"name": "n" * 100}).encode()
    for data in (body, _chunks(body)):
        response = await small_api.post(
            "/v1/groups", data=data, headers={**admin, "Content-Type": "application/json"}
        )
        assert response.status in (201, 409), await response.text()
    assert (await _counts(owner_engine))[0] == 1


def _plain_payloads(size: int) -> dict[str, Any]:
    data = base64.b64encode(b"1" * size).decode()
    encoding = base64.b64encode(b"json/plain").decode()
    return {"payloads": [{"metadata": {"encoding": encoding}, "data": data}]}


async def test_the_codec_takes_larger_batches(small_api: Api, token: TokenFactory) -> None:
    admin = auth(token(Role.PLATFORM_ADMIN))
    body = json.dumps(_plain_payloads(20 * LIMIT)).encode()
    for data in (body, _chunks(body)):
        response = await small_api.post(
            "/codec/decode", data=data, headers={**admin, "Content-Type": "application/json"}
        )
        assert response.status == 200, await response.text()
    huge = json.dumps(_plain_payloads(CODEC_BODY_BYTES)).encode()
    for data in (huge, _chunks(huge)):
        response = await small_api.post(
            "/codec/decode", data=data, headers={**admin, "Content-Type": "application/json"}
        )
        await _assert_too_large(response)


async def test_streamed_uploads_keep_their_own_limits(
    small_api: Api, tenant: SeededTenant, settings: Settings
) -> None:
    """A tus PATCH far above ADX_MAX_BODY_BYTES is fine: the plan limits it, not the table."""
    assert ROUTE_BODY_LIMITS[("PATCH", "/v1/uploads/{id}")] == STREAMED
    alice = {**tenant.auth(settings, "alice"), "Tus-Resumable": "1.0.0"}
    name = base64.b64encode(b"big.bin").decode()
    created = await small_api.post(
        "/v1/uploads",
        headers={**alice, "Upload-Length": str(20 * LIMIT), "Upload-Metadata": f"filename {name}"},
    )
    assert created.status == 201, await created.text()
    location = created.headers["Location"]
    appended = await small_api.patch(
        location,
        data=b"y" * (10 * LIMIT),
        headers={
            **alice,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert appended.status == 204, await appended.text()
    assert appended.headers["Upload-Offset"] == str(10 * LIMIT)
    assert (await small_api.delete(location, headers=alice)).status == 204
