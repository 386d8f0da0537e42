"""Requests the fuzzer once answered with a 5xx, kept as plain tests so that they stay
fixed whatever the generator draws next."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.support.tenancy import seed_tenant

Api = TestClient[web.Request, web.Application]


async def test_a_broken_multipart_part_is_a_400(
    api: Api, settings: Settings, sessions: Sessions
) -> None:
    """A part header with a control character is not an HTTP header: the body is
    malformed, not a crash."""
    tenant = await seed_tenant(sessions)
    body = b'--b\r\nContent-Disposition: form-data; name="\x1e"\r\n\r\nx\r\n--b--\r\n'
    response = await api.post(
        "/v1/files",
        data=body,
        headers={
            **tenant.auth(settings, "alice"),
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    assert response.status == 400, await response.text()
    assert response.content_type == "application/problem+json"
    assert (await response.json())["type"].endswith("/malformed-body")


@pytest.mark.parametrize(
    "query",
    [
        # Year 777: Temporal's visibility refuses it (the API answered 503 "unavailable").
        {"until": "0777-04-22T20:12:25.220544-01:42"},
        # Year 1 with an offset does not convert to UTC at all.
        {"since": "0001-01-01T00:00:00+01:00"},
        {"since": "9999-12-31T23:59:59-01:00"},
    ],
)
async def test_operation_list_times_out_of_range_are_a_400(
    api: Api, settings: Settings, sessions: Sessions, query: dict[str, str]
) -> None:
    tenant = await seed_tenant(sessions)
    response = await api.get("/v1/operations", params=query, headers=tenant.auth(settings, "admin"))
    assert response.status == 400, await response.text()
    assert (await response.json())["type"].endswith("/bad-query")
