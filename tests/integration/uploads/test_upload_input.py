"""Bad input to the file endpoints gets a clear problem and leaves nothing behind:
malformed, oversized, hostile and cross-tenant requests."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.integration.uploads.conftest import Api, upload
from tests.integration.uploads.test_upload import listing, png
from tests.support.tenancy import SeededTenant, seed_tenant


async def _problem(response: aiohttp.ClientResponse) -> dict[str, object]:
    assert response.content_type == "application/problem+json", await response.text()
    body: dict[str, object] = await response.json()
    return body


@pytest.mark.parametrize(
    ("name", "status"),
    [
        (None, 400),
        ("", 422),
        ("../../etc/passwd", 422),
        ("a/b.txt", 422),
        ("back\\slash.txt", 422),
        ("nul\x00.txt", 422),
        ("CON.txt", 422),
        ("trailing.", 422),
        ("x" * 256, 422),
        ("é" * 128, 422),  # 256 bytes in UTF-8
    ],
)
async def test_bad_file_names_are_refused_before_any_byte_is_stored(
    api: Api, settings: Settings, tenant: SeededTenant, name: str | None, status: int
) -> None:
    params = {} if name is None else {"name": name}
    response = await api.post(
        "/v1/files",
        params=params,
        data=b"data",
        headers={**tenant.auth(settings, "alice"), "Content-Type": "text/plain"},
    )
    assert response.status == status, await response.text()
    await _problem(response)
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []


@pytest.mark.parametrize("content_type", ["not a type", "text/", "image/", "a" * 300 + "/b", "*/*"])
async def test_a_bad_content_type_is_415(
    api: Api, settings: Settings, tenant: SeededTenant, content_type: str
) -> None:
    response = await api.post(
        "/v1/files",
        params={"name": "a.txt"},
        data=b"data",
        headers={**tenant.auth(settings, "alice"), "Content-Type": content_type},
    )
    assert response.status in (400, 415), await response.text()


async def test_a_body_over_the_plans_limit_is_413_and_nothing_is_kept(
    api: Api, settings: Settings, tenant: SeededTenant, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE tenant_quotas SET file_bytes = 100000 WHERE tenant_id = :t"),
            {"t": tenant.tenant_id},
        )
    alice = tenant.auth(settings, "alice")
    declared = await api.post(
        "/v1/files",
        params={"name": "big.bin"},
        data=b"x" * 100_001,
        headers={**alice, "Content-Type": "application/octet-stream"},
    )
    assert declared.status == 413
    assert (await _problem(declared))["max_bytes"] == 100_000

    async def chunked() -> object:  # no Content-Length: the limit is found while streaming
        for _ in range(40):
            yield b"y" * 8192

    streamed = await api.post(
        "/v1/files",
        params={"name": "big.bin"},
        data=chunked(),
        headers={**alice, "Content-Type": "application/octet-stream"},
    )
    assert streamed.status == 413
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []


async def test_roles_without_files_write_cannot_upload(
    api: Api, settings: Settings, tenant: SeededTenant
) -> None:
    response = await api.post(
        "/v1/files",
        params={"name": "a.txt"},
        data=b"data",
        headers={**tenant.auth(settings, "vera"), "Content-Type": "text/plain"},
    )
    assert response.status == 403


async def test_a_malformed_idempotency_key_is_400(
    api: Api, settings: Settings, tenant: SeededTenant
) -> None:
    for key in ("", "a" * 201, "spaces are not allowed", "tab\tkey"):
        response = await api.post(
            "/v1/files",
            params={"name": "a.txt"},
            data=b"data",
            headers={
                **tenant.auth(settings, "alice"),
                "Content-Type": "text/plain",
                "Idempotency-Key": key,
            },
        )
        assert response.status == 400, key


async def test_multipart_uploads_take_the_part_named_file(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    alice = tenant.auth(settings, "alice")
    form = aiohttp.FormData()
    form.add_field("file", png(), filename="photo.png", content_type="image/png")
    response = await api.post("/v1/files", data=form, headers={**alice, "Prefer": "wait=30"})
    operation = await response.json()
    assert operation["status"] == "succeeded", operation
    assert operation["result"]["name"] == "photo.png"

    wrong = aiohttp.FormData()
    wrong.add_field("other", b"x", filename="x.txt", content_type="text/plain")
    refused = await api.post("/v1/files", data=wrong, headers=alice)
    assert refused.status == 400
    # Written by hand: aiohttp's own client would percent-encode the slashes.
    boundary = "adx-boundary"
    hostile = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="../../x.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nx\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    refused_name = await api.post(
        "/v1/files",
        data=hostile,
        headers={**alice, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert refused_name.status == 422


async def test_reads_refuse_malformed_ids_queries_and_ranges(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker, sessions: Sessions
) -> None:
    alice = tenant.auth(settings, "alice")
    _, operation = await upload(api, alice, b"0123456789", name="d.txt", content_type="text/plain")
    file_id = operation["result"]["file_id"]
    for path in ("/v1/files/not-a-uuid", f"/v1/files/{{{file_id}}}", f"/v1/files/{uuid.uuid4()}"):
        assert (await api.get(path, headers=alice)).status == 404, path
    for query in (
        {"limit": "0"},
        {"limit": "1000"},
        {"limit": "x"},
        {"status": "nope"},
        {"cursor": "!!!"},
        {"created_after": "yesterday"},
        {"created_after": "2026-01-01T00:00:00"},
        {"name": "x" * 300},
    ):
        response = await api.get("/v1/files", params=query, headers=alice)
        assert response.status == 400, query
    content = f"/v1/files/{file_id}/content"
    unsatisfiable = await api.get(content, headers={**alice, "Range": "bytes=50-60"})
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["Content-Range"] == "bytes */10"
    tail = await api.get(content, headers={**alice, "Range": "bytes=-3"})
    assert tail.status == 206
    assert await tail.read() == b"789"
    odd = await api.get(content, headers={**alice, "Range": "lines=1-2"})
    assert odd.status == 200
    assert await odd.read() == b"0123456789"
    etag = odd.headers["ETag"]
    cached = await api.get(content, headers={**alice, "If-None-Match": etag})
    assert cached.status == 304
    assert (await api.get(f"/v1/files/{file_id}/thumbnails/99", headers=alice)).status == 404
    other = await seed_tenant(sessions)
    assert (await api.get(content, headers=other.auth(settings, "admin"))).status == 404


async def test_listing_pages_by_cursor_and_filters(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    alice = tenant.auth(settings, "alice")
    for i in range(5):
        await upload(
            api, alice, f"note {i}\n".encode(), name=f"note-{i}.txt", content_type="text/plain"
        )
    await upload(api, alice, png(), name="pic.png", content_type="image/png")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await api.get("/v1/files", params=params, headers=alice)).json()
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6
    assert len(set(seen)) == 6
    images = await (
        await api.get("/v1/files", params={"content_type": "image/*"}, headers=alice)
    ).json()
    assert [item["name"] for item in images["items"]] == ["pic.png"]
    named = await (await api.get("/v1/files", params={"name": "NOTE-3"}, headers=alice)).json()
    assert [item["name"] for item in named["items"]] == ["note-3.txt"]
    wildcard = await (await api.get("/v1/files", params={"name": "%"}, headers=alice)).json()
    assert wildcard["items"] == []
