"""Uploads when things go wrong: the scanner goes away, a step runs late, a step fails
after promotion, the user cancels. Nothing is lost and nothing unscanned is served."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from adx_core.contracts.files import (
    GENERATE_THUMBNAILS_ACTIVITY,
    PERSIST_FILE_ACTIVITY,
    PersistFileRequest,
    PersistFileResult,
    ProcessingInput,
    ThumbnailsResult,
)
from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from adx_workers.resources import WorkerResources
from tests.integration.uploads.conftest import (
    Api,
    api_with,
    finished,
    held_at_the_scan,
    step_of,
    upload,
)
from tests.integration.uploads.test_upload import listing, png
from tests.support.clamd import ClamdServer
from tests.support.tenancy import SeededTenant
from tests.support.workers import files_worker_with


async def test_the_upload_waits_for_clamd_and_completes_when_it_is_back(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    own_clamd: ClamdServer,
) -> None:
    alice = tenant.auth(settings, "alice")
    operation_id = await held_at_the_scan(api, temporal_client, alice, own_clamd, b"plain words\n")
    # Retried, not skipped: it stays on the scan while clamd is away.
    await asyncio.sleep(2.5)
    assert await step_of(temporal_client, operation_id) == "virus_scan"
    shown = await api.get(f"/v1/operations/{operation_id}", headers=alice)
    assert (await shown.json())["status"] == "running"
    own_clamd.start()
    done = await finished(api, alice, operation_id)
    assert done["status"] == "succeeded", done
    content = await api.get(f"/v1/files/{done['result']['file_id']}/content", headers=alice)
    assert await content.read() == b"plain words\n"


@activity.defn(name=GENERATE_THUMBNAILS_ACTIVITY)
async def slow_thumbnails(source: ProcessingInput) -> ThumbnailsResult:
    """Slower than the upload's deadline; heartbeats so a cancel reaches it."""
    for _ in range(30):
        activity.heartbeat()
        await asyncio.sleep(0.1)
    return ThumbnailsResult(thumbnails=[])


async def test_a_late_thumbnail_step_leaves_the_upload_complete_and_thumbnails_pending(
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    resources: WorkerResources,
    sessions: Sessions,
) -> None:
    # A one-second deadline for the optional steps; the fake takes three.
    hurried = settings.model_copy(update={"processing_deadline_seconds": 1.0})
    resources.settings = hurried
    worker = files_worker_with(
        temporal_client, resources, settings.task_queue("files"), [slow_thumbnails]
    )
    alice = tenant.auth(settings, "alice")
    async with worker, api_with(hurried, temporal_client, sessions) as api:
        _, operation = await upload(api, alice, png(), name="late.png", content_type="image/png")
        assert operation["status"] == "succeeded", operation
        result = operation["result"]
        file_id = result["file_id"]
        assert result["processing"]["thumbnails"] == "pending", result
        assert "thumbnails_pending" in result["marks"]
        assert result["processing"]["metadata"] == "done"
        assert result["processing_operation"] == f"file-processing-{file_id}"
        shown = await (await api.get(f"/v1/files/{file_id}", headers=alice)).json()
        assert shown["status"] == "ready"
        assert shown["processing"]["thumbnails"] == "pending"
        pending = await api.get(f"/v1/files/{file_id}/thumbnails/128", headers=alice)
        assert pending.status == 404
        assert (await pending.json())["type"].endswith("thumbnail-pending")
        # The follow-up workflow runs the step again without the deadline.
        # The follow-up is the same tenant's operation, so the API serves it.
        seen = await api.get(f"/v1/operations/{result['processing_operation']}", headers=alice)
        assert seen.status == 200
        follow_up = temporal_client.get_workflow_handle(result["processing_operation"])
        await asyncio.wait_for(follow_up.result(), 30)
        shown = await (await api.get(f"/v1/files/{file_id}", headers=alice)).json()
    assert shown["processing"]["thumbnails"] == "done"


@activity.defn(name=PERSIST_FILE_ACTIVITY)
async def failing_persist(request: PersistFileRequest) -> PersistFileResult:
    raise ApplicationError("the database said no", type="PersistRefused", non_retryable=True)


async def test_a_failure_after_promotion_removes_the_object_and_the_record(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    resources: WorkerResources,
) -> None:
    resources.settings = settings
    worker = files_worker_with(
        temporal_client, resources, settings.task_queue("files"), [failing_persist]
    )
    alice = tenant.auth(settings, "alice")
    async with worker:
        _, operation = await upload(api, alice, png(), name="doomed.png", content_type="image/png")
    assert operation["status"] == "failed", operation
    assert operation["error"]["step"] == "persist"
    file_id = operation["id"].removeprefix("file-upload-")
    assert (await api.get(f"/v1/files/{file_id}", headers=alice)).status == 404
    for folder in ("files", "thumbnails", "quarantine"):
        assert listing(settings.storage_root, tenant.tenant_id, folder) == [], folder


async def test_cancelling_an_upload_leaves_nothing(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    own_clamd: ClamdServer,
) -> None:
    alice = tenant.auth(settings, "alice")
    operation_id = await held_at_the_scan(api, temporal_client, alice, own_clamd, b"never mind\n")
    cancel = await api.post(f"/v1/operations/{operation_id}/cancel", headers=alice)
    assert cancel.status == 202
    done = await finished(api, alice, operation_id)
    assert done["status"] == "cancelled", done
    file_id = operation_id.removeprefix("file-upload-")
    assert (await api.get(f"/v1/files/{file_id}", headers=alice)).status == 404
    assert listing(settings.storage_root, tenant.tenant_id, "quarantine") == []
