"""Resumable uploads (tus 1.0): a connection that drops mid-body loses at most one
segment, and the client continues from the acknowledged offset."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.integration.uploads.conftest import Api, api_with, finished
from tests.integration.uploads.test_upload import listing
from tests.support.tenancy import SeededTenant

SEGMENT = 64 * 1024


@pytest.fixture
async def small_segments(
    settings: Settings, temporal_client: Client, sessions: Sessions
) -> AsyncIterator[Api]:
    async with api_with(
        settings.model_copy(update={"upload_segment_bytes": SEGMENT}), temporal_client, sessions
    ) as api:
        yield api


def _meta(name: str, content_type: str) -> str:
    return f"filename {_b64(name)},filetype {_b64(content_type)}"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


async def _create(api: Api, headers: dict[str, str], length: int) -> str:
    response = await api.post(
        "/v1/uploads",
        headers={
            **headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(length),
            "Upload-Metadata": _meta("big.bin", "application/octet-stream"),
        },
    )
    assert response.status == 201, await response.text()
    assert response.headers["Tus-Resumable"] == "1.0.0"
    return response.headers["Location"]


async def _offset(api: Api, headers: dict[str, str], location: str) -> int:
    response = await api.head(location, headers={**headers, "Tus-Resumable": "1.0.0"})
    assert response.status == 200
    return int(response.headers["Upload-Offset"])


async def test_a_dropped_connection_resumes_from_the_acknowledged_offset(
    small_segments: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    api = small_segments
    alice = tenant.auth(settings, "alice")
    data = os.urandom(SEGMENT * 5 + 1234)
    location = await _create(api, alice, len(data))
    assert await _offset(api, alice, location) == 0

    async def breaks_after(limit: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < limit:
            yield data[sent : sent + 16 * 1024]
            sent += 16 * 1024
        # Let the server store what it can before the line goes dead: a drop discards
        # whatever is still in the socket's buffers, which would make the test flaky.
        for _ in range(100):
            if await _offset(api, alice, location) >= SEGMENT * 2:
                break
            await asyncio.sleep(0.05)
        raise ConnectionResetError("the train went into a tunnel")

    with pytest.raises((aiohttp.ClientError, ConnectionResetError)):
        await api.patch(
            location,
            data=breaks_after(SEGMENT * 2 + 20_000),
            headers={
                **alice,
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
    offset = await _offset(api, alice, location)
    # Two whole segments were acknowledged; the partial third was dropped.
    assert offset == SEGMENT * 2

    stale = await api.patch(
        location,
        data=data[:10],
        headers={
            **alice,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert stale.status == 409
    done = await api.patch(
        location,
        data=data[offset:],
        headers={
            **alice,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert done.status == 204, await done.text()
    assert int(done.headers["Upload-Offset"]) == len(data)
    operation_id = done.headers["Location"].rsplit("/", 1)[-1]
    result = await finished(api, alice, operation_id)
    assert result["status"] == "succeeded", result
    assert result["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    content = await api.get(f"/v1/files/{result['result']['file_id']}/content", headers=alice)
    assert await content.read() == data
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []
    session = await (await api.get(location, headers=alice)).json()
    assert session["status"] == "complete"
    assert session["links"]["operation"] == f"/v1/operations/{operation_id}"


async def test_upload_sessions_refuse_bad_requests(
    small_segments: Api, settings: Settings, tenant: SeededTenant
) -> None:
    api = small_segments
    alice = tenant.auth(settings, "alice")
    for headers, status in (
        ({}, 400),
        ({"Upload-Length": "-1"}, 400),
        ({"Upload-Length": "0"}, 400),
        ({"Upload-Length": str(10**12)}, 413),
        ({"Upload-Length": "10", "Upload-Metadata": "filename !!!"}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": _meta("../x", "text/plain")}, 422),
        ({"Upload-Length": "10"}, 400),  # no file name
    ):
        response = await api.post("/v1/uploads", headers={**alice, **headers})
        assert response.status == status, (headers, await response.text())
    location = await _create(api, alice, 100)
    wrong_type = await api.patch(
        location, data=b"x", headers={**alice, "Upload-Offset": "0", "Content-Type": "text/plain"}
    )
    assert wrong_type.status == 415
    too_much = await api.patch(
        location,
        data=b"x" * 101,
        headers={**alice, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert too_much.status == 413
    assert await _offset(api, alice, location) == 0
    # Someone else's session is not there for them.
    bob = tenant.auth(settings, "bob")
    assert (await api.head(location, headers=bob)).status == 404
    assert (await api.delete(location, headers=bob)).status == 404
    options = await api.options("/v1/uploads")
    assert options.headers["Tus-Version"] == "1.0.0"
    dropped = await api.delete(location, headers={**alice, "Tus-Resumable": "1.0.0"})
    assert dropped.status == 204
    assert (await api.head(location, headers=alice)).status == 404
