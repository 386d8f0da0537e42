"""The codec server decodes history payloads for platform admins, and for nobody else."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from temporalio.client import Client as TemporalClient
from temporalio.worker import Worker

from adx_api.app import create_app
from adx_core.auth import Role
from adx_core.db.engine import Sessions
from adx_core.settings import Environment, Settings
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import BODY, auth

Client = TestClient[web.Request, web.Application]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def _encrypted_input(
    api: Client, token: TokenFactory, temporal: TemporalClient
) -> dict[str, Any]:
    response = await api.post(
        "/v1/tenants", json=BODY, headers={**auth(token()), "Prefer": "wait=20"}
    )
    operation = await response.json()
    history = await temporal.get_workflow_handle(operation["id"]).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    payload = started.input.payloads[0]
    return {
        "metadata": {key: _b64(value) for key, value in payload.metadata.items()},
        "data": _b64(payload.data),
    }


async def test_platform_admin_decodes_what_history_holds(
    api: Client, token: TokenFactory, tenants_worker: Worker, temporal_client: TemporalClient
) -> None:
    encrypted = await _encrypted_input(api, token, temporal_client)
    assert base64.b64decode(encrypted["metadata"]["encoding"]) == b"binary/encrypted"

    response = await api.post(
        "/codec/decode",
        json={"payloads": [encrypted]},
        headers={**auth(token()), "X-Namespace": "default", "Origin": "http://127.0.0.1:8233"},
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8233"
    decoded = (await response.json())["payloads"][0]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert b'"slug":"acme"' in base64.b64decode(decoded["data"]).replace(b" ", b"")

    # And back: encode gives ciphertext that decodes to the same thing.
    encoded = await api.post("/codec/encode", json={"payloads": [decoded]}, headers=auth(token()))
    again = await api.post("/codec/decode", json=await encoded.json(), headers=auth(token()))
    assert (await again.json())["payloads"][0] == decoded


async def test_codec_server_refuses_everyone_else(
    api: Client, token: TokenFactory, tenants_worker: Worker, temporal_client: TemporalClient
) -> None:
    body = {"payloads": [await _encrypted_input(api, token, temporal_client)]}
    anonymous = await api.post("/codec/decode", json=body)  # not development: no exception
    assert anonymous.status == 401
    for role in (Role.TENANT_ADMIN, Role.MEMBER, Role.VIEWER):
        refused = await api.post("/codec/decode", json=body, headers=auth(token(role=role)))
        assert refused.status == 403
    forged = await api.post("/codec/decode", json=body, headers={"Authorization": "Bearer x.y.z"})
    assert forged.status == 401
    unknown_origin = await api.post(
        "/codec/decode", json=body, headers={**auth(token()), "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in unknown_origin.headers


async def test_codec_server_rejects_bad_payloads(
    api: Client, token: TokenFactory, settings: Settings
) -> None:
    admin = auth(token())
    cases: list[tuple[Any, int]] = [
        ("not json", 400),
        ({"payloads": "nope"}, 400),
        (
            {
                "payloads": [
                    {"metadata": {"encoding": _b64(b"binary/encrypted")}, "data": _b64(b"x" * 40)}
                ]
            },
            422,
        ),
        (
            {
                "payloads": [
                    {
                        "metadata": {
                            "encoding": _b64(b"binary/encrypted"),
                            "encryption-key-id": _b64(b"retired"),
                        },
                        "data": _b64(b"x" * 40),
                    }
                ]
            },
            422,
        ),
        ({"payloads": [{"data": _b64(b"1")}] * 1001}, 413),
    ]
    for body, status in cases:
        if isinstance(body, str):
            response = await api.post(
                "/codec/decode", data=body, headers={**admin, "Content-Type": "application/json"}
            )
        else:
            response = await api.post("/codec/decode", json=body, headers=admin)
        assert response.status == status, body if not isinstance(body, dict) else status
        assert response.content_type == "application/problem+json"
    wrong_type = await api.post(
        "/codec/decode", data=b"{}", headers={**admin, "Content-Type": "text/plain"}
    )
    assert wrong_type.status == 415
    preflight = await api.options(
        "/codec/decode",
        headers={"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
    # Unencrypted payloads pass through untouched.
    plain = {"payloads": [{"metadata": {"encoding": _b64(b"json/plain")}, "data": _b64(b"1")}]}
    passed = await api.post("/codec/decode", json=plain, headers=admin)
    assert (await passed.json()) == plain
    assert settings.codec_keys


async def test_development_ui_on_loopback_needs_no_token(
    settings: Settings, temporal_client: TemporalClient, sessions: Sessions
) -> None:
    """The dev server's UI has no login; only there, and only from loopback, no token."""
    dev = settings.model_copy(update={"env": Environment.DEVELOPMENT})
    async with TestClient(
        TestServer(create_app(dev, temporal=temporal_client, sessions=sessions))
    ) as api:
        plain = {"payloads": [{"metadata": {"encoding": _b64(b"json/plain")}, "data": _b64(b"1")}]}
        response = await api.post("/codec/decode", json=plain)
        assert response.status == 200
        # A token, when given, is still checked.
        member = await api.post(
            "/codec/decode", json=plain, headers={"Authorization": "Bearer not-a-token"}
        )
        assert member.status == 401
