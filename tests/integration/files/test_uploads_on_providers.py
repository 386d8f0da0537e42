"""Uploads land in the provider the tenant's files are in: quarantine, scan and promotion
all happen there, and reads follow the record."""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.db.engine import Sessions
from adx_core.settings import ScannerKind, Settings
from adx_core.storage import StorageRegistry
from tests.integration.files.conftest import listing
from tests.integration.uploads.conftest import api_with, upload
from tests.integration.uploads.test_upload import png
from tests.support.clamd import ClamdServer
from tests.support.tenancy import seed_tenant


@pytest.fixture
def settings(settings: Settings, clamd_server: ClamdServer) -> Settings:
    return settings.model_copy(
        update={"scanner": ScannerKind.CLAMD, "clamd_address": clamd_server.address}
    )


@pytest.mark.parametrize("provider", ["s3", "azure", "gcs"])
async def test_an_upload_is_scanned_and_stored_on_the_tenants_provider(
    provider: str,
    settings: Settings,
    temporal_client: Client,
    sessions: Sessions,
    stores: StorageRegistry,
    files_worker: Worker,
) -> None:
    tenant = await seed_tenant(sessions, provider=provider)
    alice = tenant.auth(settings, "alice")
    data = png()
    async with api_with(settings, temporal_client, sessions) as api:
        _, operation = await upload(api, alice, data, name="sky.png", content_type="image/png")
        assert operation["status"] == "succeeded", operation
        result = operation["result"]
        assert result["storage_provider"] == provider
        content = await api.get(f"/v1/files/{result['file_id']}/content", headers=alice)
        assert await content.read() == data
        thumb = await api.get(f"/v1/files/{result['file_id']}/thumbnails/128", headers=alice)
        assert thumb.status == 200
    prefix = f"tenants/{tenant.tenant_id}/"
    objects = await listing(stores.get(provider), prefix)
    assert f"{prefix}files/{result['file_id']}" in objects
    assert not [key for key in objects if "/quarantine/" in key]
    assert await listing(stores.get("local"), prefix) == {}
