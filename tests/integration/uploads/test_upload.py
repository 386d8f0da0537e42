"""file_upload_workflow through the API, on the real stack: clamd, Temporal, PostgreSQL and
local storage. What a user does: upload, wait for the operation, read the file back."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
import zipfile
from pathlib import Path

from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.db.engine import Sessions
from adx_core.scanning import eicar_bytes
from adx_core.settings import Settings
from adx_workers.resources import WorkerResources
from tests.integration.uploads.conftest import Api, api_with, upload
from tests.support.clamd import HDB_SIGNATURE, NDB_SIGNATURE, ClamdFactory
from tests.support.tenancy import SeededTenant
from tests.support.workers import files_worker_with


def png(width: int = 300, height: int = 200, colour: tuple[int, int, int] = (20, 90, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def listing(root: Path, tenant_id: str, folder: str) -> list[str]:
    base = root / "tenants" / tenant_id / folder
    if not base.exists():
        return []
    return sorted(
        str(p.relative_to(base))
        for p in base.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


async def test_a_clean_png_gets_thumbnails_and_metadata(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    alice = tenant.auth(settings, "alice")
    data = png()
    status, operation = await upload(api, alice, data, name="sky.png", content_type="image/png")
    assert status == 200, operation
    assert operation["status"] == "succeeded", operation
    result = operation["result"]
    file_id = result["file_id"]
    assert result["content_type"] == "image/png"
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["processing"] == {"thumbnails": "done", "metadata": "done", "analysis": "done"}
    assert result["marks"] == []
    assert sorted(t["size"] for t in result["thumbnails"]) == [128, 512]
    assert result["metadata"]["image"]["width"] == 300
    assert result["metadata"]["image"]["height"] == 200
    assert result["metadata"]["sha256"] == result["sha256"]
    assert "blue" in result["analysis"]["tags"]

    got = await api.get(f"/v1/files/{file_id}", headers=alice)
    file = await got.json()
    assert file["status"] == "ready"
    assert file["name"] == "sky.png"
    content = await api.get(f"/v1/files/{file_id}/content", headers=alice)
    assert content.status == 200
    assert await content.read() == data
    assert content.headers["X-Content-Type-Options"] == "nosniff"
    assert content.headers["ETag"] == f'"{result["sha256"]}"'
    ranged = await api.get(
        f"/v1/files/{file_id}/content", headers={**alice, "Range": "bytes=10-19"}
    )
    assert ranged.status == 206
    assert await ranged.read() == data[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    thumb = await api.get(f"/v1/files/{file_id}/thumbnails/128", headers=alice)
    assert thumb.status == 200
    assert thumb.content_type == "image/webp"
    small = Image.open(io.BytesIO(await thumb.read()))
    assert max(small.size) == 128
    # Nothing is left in quarantine once the file is promoted.
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []


async def test_eicar_plain_zipped_and_nested_is_rejected_and_never_served(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    files_worker: Worker,
    owner_engine: AsyncEngine,
) -> None:
    alice = tenant.auth(settings, "alice")
    admin = tenant.auth(settings, "admin")
    cases = {
        "eicar.com": (eicar_bytes(), "application/octet-stream"),
        "eicar.zip": (zipped("eicar.com", eicar_bytes()), "application/zip"),
        "nested.zip": (
            zipped("inner.zip", zipped("deeper.zip", zipped("eicar.com", eicar_bytes()))),
            "application/zip",
        ),
    }
    for name, (data, content_type) in cases.items():
        status, operation = await upload(api, alice, data, name=name, content_type=content_type)
        assert status == 200, (name, operation)
        assert operation["status"] == "failed", (name, operation)
        error = operation["error"]
        assert error["code"] == "FileInfected", (name, error)
        assert error["step"] == "virus_scan"
        assert NDB_SIGNATURE in error["detail"] or HDB_SIGNATURE in error["detail"], error
        file_id = operation["id"].removeprefix("file-upload-")
        for headers in (alice, admin):
            shown = await (await api.get(f"/v1/files/{file_id}", headers=headers)).json()
            assert shown["status"] == "rejected"
            assert shown["rejection"]["reason"] == "infected"
            assert "links" in shown
            assert "content" not in shown["links"]
            content = await api.get(f"/v1/files/{file_id}/content", headers=headers)
            assert content.status == 409
            thumb = await api.get(f"/v1/files/{file_id}/thumbnails/128", headers=headers)
            assert thumb.status == 409
    # Kept in quarantine for inspection, never promoted.
    assert len(listing(settings.storage_root, tenant.tenant_id, "quarantine")) == 3
    assert listing(settings.storage_root, tenant.tenant_id, "files") == []
    async with owner_engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log"
                    " WHERE tenant_id = :t AND action = 'file.infected'"
                ),
                {"t": tenant.tenant_id},
            )
        ).scalar()
    assert audited == 3


async def test_a_file_over_the_scan_limit_is_refused_before_it_is_stored(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    """The plan allows 1 GiB, the scanner 8 MiB: the API refuses more than the scanner
    can take, with 413, rather than store bytes that could only be rejected."""
    alice = tenant.auth(settings, "alice")
    data = b"\0" * (settings.scan_max_bytes + 1)
    status, problem = await upload(api, alice, data, name="big.bin")
    assert status == 413, problem
    assert problem["max_bytes"] == settings.scan_max_bytes
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []


async def test_a_file_over_clamds_own_limit_is_rejected_not_passed(
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    resources: WorkerResources,
    sessions: Sessions,
    clamd_factory: ClamdFactory,
) -> None:
    """ADX_SCAN_MAX_BYTES set above what clamd takes: clamd's "size limit exceeded" (or
    its AlertExceedsMax heuristic) rejects the file; it is never taken as clean."""
    clamd = clamd_factory(max_bytes=1024 * 1024)
    loose = settings.model_copy(
        update={"clamd_address": clamd.address, "scan_max_bytes": 16 * 1024 * 1024}
    )
    resources.settings = loose
    alice = tenant.auth(settings, "alice")
    worker = files_worker_with(temporal_client, resources, settings.task_queue("files"), [])
    async with worker, api_with(loose, temporal_client, sessions) as api:
        _, operation = await upload(api, alice, os.urandom(2 * 1024 * 1024), name="big.bin")
    assert operation["status"] == "failed", operation
    assert operation["error"]["code"] == "FileTooLargeToScan"
    assert operation["error"]["step"] == "virus_scan"
    assert listing(settings.storage_root, tenant.tenant_id, "files") == []


async def test_a_png_renamed_to_pdf_is_rejected(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    alice = tenant.auth(settings, "alice")
    _status, operation = await upload(
        api, alice, png(), name="report.pdf", content_type="application/pdf"
    )
    assert operation["status"] == "failed", operation
    assert operation["error"]["code"] == "FileRejected"
    assert operation["error"]["step"] == "validate"
    file_id = operation["id"].removeprefix("file-upload-")
    shown = await (await api.get(f"/v1/files/{file_id}", headers=alice)).json()
    assert shown["rejection"]["reason"] == "type_mismatch"
    # Rejected for its type, not a virus: the staged bytes are gone too.
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header that claims 10^10 pixels, with a tiny compressed body."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


async def test_a_decompression_bomb_image_is_rejected(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    import resource

    alice = tenant.auth(settings, "alice")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _status, operation = await upload(
        api, alice, png_bomb(), name="bomb.png", content_type="image/png"
    )
    assert operation["status"] == "failed", operation
    assert operation["error"]["code"] == "FileRejected"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"peak RSS grew {grown_mib:.0f} MiB"


async def test_the_same_idempotency_key_gives_one_file_and_one_workflow(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    files_worker: Worker,
    owner_engine: AsyncEngine,
) -> None:
    alice = tenant.auth(settings, "alice")
    key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    first_status, first = await upload(
        api, alice, b"hello there\n", name="a.txt", content_type="text/plain", wait=None, extra=key
    )
    second_status, second = await upload(
        api, alice, b"hello there\n", name="a.txt", content_type="text/plain", extra=key
    )
    assert first_status == 202
    assert second_status == 200
    assert first["id"] == second["id"]
    assert second["status"] == "succeeded"
    async with owner_engine.connect() as conn:
        files = (
            await conn.execute(
                text("SELECT count(*) FROM files WHERE tenant_id = :t"), {"t": tenant.tenant_id}
            )
        ).scalar()
    assert files == 1
    # The second request's own staged copy was dropped: nothing lingers in quarantine.
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []
    # Another user's same key is another file.
    bob = tenant.auth(settings, "bob")
    _, third = await upload(
        api, bob, b"hello there\n", name="a.txt", content_type="text/plain", extra=key
    )
    assert third["id"] != first["id"]


async def test_files_are_private_to_their_owner_grantees_and_admins(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker, sessions: object
) -> None:
    from tests.support.tenancy import seed_tenant

    alice = tenant.auth(settings, "alice")
    _, operation = await upload(
        api, alice, b"secret notes", name="notes.txt", content_type="text/plain"
    )
    file_id = operation["result"]["file_id"]
    other = await seed_tenant(sessions)  # type: ignore[arg-type]
    for headers, expected in (
        (tenant.auth(settings, "admin"), 200),
        (tenant.auth(settings, "bob"), 404),
        (other.auth(settings, "admin"), 404),
        (other.auth(settings, "alice"), 404),
    ):
        for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
            response = await api.get(path, headers=headers)
            assert response.status == expected, (path, headers, await response.text())
    listed = await (await api.get("/v1/files", headers=tenant.auth(settings, "bob"))).json()
    assert listed["items"] == []
    mine = await (await api.get("/v1/files", headers=alice)).json()
    assert [item["id"] for item in mine["items"]] == [file_id]
