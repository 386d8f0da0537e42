"""After the upload: running a failed step again, and deleting a file."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.integration.uploads.conftest import Api, upload
from tests.integration.uploads.test_upload import listing, png
from tests.support.tenancy import SeededTenant, seed_tenant


async def test_a_failed_step_runs_again_on_request(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    files_worker: Worker,
    owner_engine: AsyncEngine,
    sessions: Sessions,
) -> None:
    alice = tenant.auth(settings, "alice")
    _, done = await upload(api, alice, png(), name="p.png", content_type="image/png")
    file_id = done["result"]["file_id"]
    path = f"/v1/files/{file_id}/processing"
    nothing = await api.post(path, headers=alice)
    assert nothing.status == 409
    # As if the thumbnailer had failed for good.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE files SET processing = processing || CAST(:p AS jsonb),"
                " thumbnails = '[]' WHERE id = :id"
            ),
            {"p": json.dumps({"thumbnails": "failed"}), "id": file_id},
        )
    rerun = await api.post(path, headers={**alice, "Prefer": "wait=30"})
    operation = await rerun.json()
    assert rerun.status == 200, operation
    assert operation["status"] == "succeeded"
    assert operation["result"]["processing"] == {"thumbnails": "done"}
    shown = await (await api.get(f"/v1/files/{file_id}", headers=alice)).json()
    assert shown["processing"]["thumbnails"] == "done"
    assert len(shown["thumbnails"]) == 2
    for body, status in (({"steps": ["sharpen"]}, 422), ({"steps": []}, 422), ({"x": 1}, 422)):
        refused = await api.post(path, json=body, headers=alice)
        assert refused.status == status, body
    other = await seed_tenant(sessions)
    assert (await api.post(path, headers=other.auth(settings, "admin"))).status == 404
    assert (await api.post(path, headers=tenant.auth(settings, "bob"))).status == 404


async def test_deleting_a_file_removes_its_bytes_thumbnails_and_grants(
    api: Api, settings: Settings, tenant: SeededTenant, files_worker: Worker
) -> None:
    alice = tenant.auth(settings, "alice")
    _, done = await upload(api, alice, png(), name="gone.png", content_type="image/png")
    file_id = done["result"]["file_id"]
    link = await api.post(
        f"/v1/files/{file_id}/shares",
        json={"link": True, "expires_in_seconds": 3600},
        headers={**alice, "Prefer": "wait=30"},
    )
    share = await link.json()
    assert share["status"] == "succeeded", share
    token_path = share["result"]["link"]
    assert (await api.get(token_path)).status == 200
    # Only the owner (or an admin) deletes; others do not even see it.
    assert (
        await api.delete(f"/v1/files/{file_id}", headers=tenant.auth(settings, "bob"))
    ).status == 404
    deleted = await api.delete(f"/v1/files/{file_id}", headers=alice)
    assert deleted.status == 204
    assert (await api.get(f"/v1/files/{file_id}", headers=alice)).status == 404
    assert (await api.get(token_path)).status == 404
    assert listing(settings.storage_root, tenant.tenant_id, "files") == []
    assert listing(settings.storage_root, tenant.tenant_id, "thumbnails") == []
    listed = await (await api.get("/v1/files", headers=alice)).json()
    assert listed["items"] == []
    again = await api.delete(f"/v1/files/{file_id}", headers=alice)
    assert again.status == 404
