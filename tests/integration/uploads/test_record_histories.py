"""Record file_upload_workflow and file_processing_workflow histories for tests/replay
(ADX_RECORD_HISTORIES=1): a processed PNG, an infected upload, a late step handed to
file_processing_workflow, and a cancel."""

from __future__ import annotations

from temporalio.client import Client

from adx_core.db.engine import Sessions
from adx_core.scanning import eicar_bytes
from adx_core.settings import Settings
from adx_workers.resources import WorkerResources
from tests.integration.uploads.conftest import (
    Api,
    api_with,
    finished,
    held_at_the_scan,
    upload,
)
from tests.integration.uploads.test_upload import png
from tests.integration.uploads.test_upload_failures import slow_thumbnails
from tests.replay.test_replay import HISTORIES, recording
from tests.support.clamd import ClamdServer
from tests.support.tenancy import SeededTenant
from tests.support.workers import files_worker_with


async def _save(client: Client, workflow_id: str, name: str) -> None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


@recording
async def test_record_processed_and_infected(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    files_worker: object,
) -> None:
    alice = tenant.auth(settings, "alice")
    _, done = await upload(api, alice, png(), name="sky.png", content_type="image/png")
    assert done["status"] == "succeeded"
    await _save(temporal_client, done["id"], "file_upload_workflow--succeeded")
    _, infected = await upload(api, alice, eicar_bytes(), name="eicar.com")
    assert infected["status"] == "failed"
    await _save(temporal_client, infected["id"], "file_upload_workflow--infected")


@recording
async def test_record_late_step_and_follow_up(
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    resources: WorkerResources,
    sessions: Sessions,
) -> None:
    hurried = settings.model_copy(update={"processing_deadline_seconds": 1.0})
    resources.settings = hurried
    worker = files_worker_with(
        temporal_client, resources, settings.task_queue("files"), [slow_thumbnails]
    )
    alice = tenant.auth(settings, "alice")
    async with worker, api_with(hurried, temporal_client, sessions) as api:
        _, done = await upload(api, alice, png(), name="late.png", content_type="image/png")
        follow_up = done["result"]["processing_operation"]
        await temporal_client.get_workflow_handle(follow_up).result()
    await _save(temporal_client, done["id"], "file_upload_workflow--thumbnails_pending")
    await _save(temporal_client, follow_up, "file_processing_workflow--succeeded")


@recording
async def test_record_cancelled(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    own_clamd: ClamdServer,
) -> None:
    alice = tenant.auth(settings, "alice")
    operation_id = await held_at_the_scan(api, temporal_client, alice, own_clamd, b"words\n")
    await api.post(f"/v1/operations/{operation_id}/cancel", headers=alice)
    done = await finished(api, alice, operation_id)
    assert done["status"] == "cancelled"
    await _save(temporal_client, operation_id, "file_upload_workflow--cancelled")
