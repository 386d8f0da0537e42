"""Upload tests: the real API, a files worker, clamd with the EICAR test database, local
storage in the test's own directory, and a pro-plan tenant with members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.contracts.search import STEP
from adx_core.db.engine import Sessions
from adx_core.settings import ScannerKind, Settings
from adx_workers.files.worker import build_worker
from adx_workers.resources import WorkerResources
from tests.support.clamd import ClamdFactory, ClamdServer
from tests.support.tenancy import SeededTenant, seed_tenant
from tests.support.workers import files_worker_with

Api = TestClient[web.Request, web.Application]


@pytest.fixture
def settings(settings: Settings, clamd_server: ClamdServer) -> Settings:
    return settings.model_copy(
        update={
            "scanner": ScannerKind.CLAMD,
            "clamd_address": clamd_server.address,
            "scan_max_bytes": clamd_server.max_bytes,
            "scan_timeout_seconds": 10.0,
            "processing_deadline_seconds": 20.0,
        }
    )


@pytest.fixture
async def files_worker(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> AsyncIterator[Worker]:
    worker = build_worker(temporal_client, resources, settings.task_queue("files"))
    async with worker:
        yield worker


@pytest.fixture
async def own_clamd(
    settings: Settings,
    temporal_client: Client,
    resources: WorkerResources,
    clamd_factory: ClamdFactory,
) -> AsyncIterator[ClamdServer]:
    """A clamd of this test's own and a files worker that scans with it, so the test may
    stop it (the session's clamd serves every other test)."""
    clamd = clamd_factory()
    resources.settings = settings.model_copy(update={"clamd_address": clamd.address})
    async with files_worker_with(temporal_client, resources, settings.task_queue("files"), []):
        yield clamd


@pytest.fixture
async def tenant(sessions: Sessions) -> SeededTenant:
    return await seed_tenant(sessions)


@asynccontextmanager
async def api_with(
    settings: Settings, temporal_client: Client, sessions: Sessions
) -> AsyncIterator[Api]:
    """The API with settings of a test's own (a shorter processing deadline, say)."""
    from adx_api.app import create_app

    app = create_app(settings, temporal=temporal_client, sessions=sessions)
    async with TestClient(TestServer(app)) as client:
        yield client


async def upload(
    api: Api,
    headers: dict[str, str],
    data: bytes,
    *,
    name: str = "file.bin",
    content_type: str = "application/octet-stream",
    wait: int | None = 30,
    extra: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST /v1/files with a raw body; with ``wait`` the answer is the finished operation."""
    sent = {**headers, "Content-Type": content_type, **(extra or {})}
    if wait is not None:
        sent["Prefer"] = f"wait={wait}"
    response = await api.post("/v1/files", params={"name": name}, data=data, headers=sent)
    return response.status, await response.json()


async def finished(api: Api, headers: dict[str, str], operation_id: str) -> dict[str, Any]:
    """Poll the operation until it is over (for uploads started without Prefer: wait)."""
    for _ in range(600):
        response = await api.get(f"/v1/operations/{operation_id}", headers=headers)
        body: dict[str, Any] = await response.json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"operation {operation_id} did not finish")


async def step_of(client: Client, operation_id: str) -> str | None:
    """The workflow's current step, from its Step search attribute."""
    description = await client.get_workflow_handle(operation_id).describe()
    return description.typed_search_attributes.get(STEP)


async def wait_for_step(client: Client, operation_id: str, step: str) -> None:
    for _ in range(100):
        if await step_of(client, operation_id) == step:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{operation_id} never reached {step}")


async def held_at_the_scan(
    api: Api,
    client: Client,
    headers: dict[str, str],
    clamd: ClamdServer,
    data: bytes,
    *,
    name: str = "held.txt",
    content_type: str = "text/plain",
) -> str:
    """Stop clamd, upload ``data`` and wait until the upload waits at the scan; the
    operation id."""
    clamd.stop()
    status, operation = await upload(
        api, headers, data, name=name, content_type=content_type, wait=None
    )
    assert status == 202, operation
    await wait_for_step(client, operation["id"], "virus_scan")
    return str(operation["id"])
