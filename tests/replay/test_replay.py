"""Replay recorded workflow histories against today's workflow code.

A change that would make a running workflow take a different path (a non-deterministic
change) fails here, before it reaches a worker that has old executions in flight. The
histories are recorded from real runs with ``ADX_RECORD_HISTORIES=1`` (see below) and
committed; they are encrypted with the fixed test key from ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowHistory
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Replayer, Worker

from adx_core.contracts.progress import PROGRESS_MEMO_KEY
from adx_core.contracts.tenants import CREATE_TENANT_STORAGE_ACTIVITY
from adx_core.settings import Settings
from adx_core.temporal.client import data_converter, interceptors
from adx_workers.files.worker import WORKFLOWS as FILE_WORKFLOWS
from adx_workers.sandbox import workflow_runner
from adx_workers.tenants.worker import WORKFLOWS as TENANT_WORKFLOWS
from adx_workers.users.worker import WORKFLOWS as USER_WORKFLOWS
from tests.conftest import TokenFactory
from tests.integration.test_compensation import activation_hangs, failing
from tests.integration.test_tenant_slice import BODY, auth, wait_for_status, wait_for_step
from tests.support.workers import WorkerFactory

HISTORIES = Path(__file__).parent / "histories"
# Every worker serves deployment_check_workflow: each definition once.
WORKFLOWS = list(dict.fromkeys([*TENANT_WORKFLOWS, *USER_WORKFLOWS, *FILE_WORKFLOWS]))

Client = TestClient[web.Request, web.Application]


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
async def test_history_replays(path: Path, migrated: Settings) -> None:
    history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        data_converter=data_converter(migrated),
        interceptors=interceptors(),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )
    await replayer.replay_workflow(history)


def test_every_workflow_has_a_recorded_history() -> None:
    names = {path.stem.split("--")[0] for path in recorded()}
    for workflow in WORKFLOWS:
        name = getattr(workflow, "__temporal_workflow_definition").name
        assert name in names, f"record a history for {name} (ADX_RECORD_HISTORIES=1)"


recording = pytest.mark.skipif(
    os.environ.get("ADX_RECORD_HISTORIES") != "1",
    reason="set ADX_RECORD_HISTORIES=1 to record histories from real runs",
)


async def _save(client: TemporalClient, workflow_id: str, name: str) -> None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


@recording
async def test_record_tenant_provisioning_success(
    api: Client, token: TokenFactory, tenants_worker: Worker, temporal_client: TemporalClient
) -> None:
    response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
    final = await wait_for_status(api, token(), response.headers["Location"])
    assert final["status"] == "succeeded"
    await _save(temporal_client, final["id"], "tenant_provisioning_workflow--succeeded")


@recording
async def test_record_tenant_provisioning_with_progress_in_memo(
    api: Client, token: TokenFactory, tenants_worker: Worker, temporal_client: TemporalClient
) -> None:
    """A run under the adx-progress-in-memo patch: the histories above predate it, and
    replay with the patch off; this one replays the path with it on."""
    response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
    final = await wait_for_status(api, token(), response.headers["Location"])
    assert final["status"] == "succeeded"
    await _save(temporal_client, final["id"], "tenant_provisioning_workflow--progress-in-memo")


def test_the_memo_history_carries_every_progress_event() -> None:
    history = WorkflowHistory.from_json(
        "memo", (HISTORIES / "tenant_provisioning_workflow--progress-in-memo.json").read_text()
    )
    modified = [
        event
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED
        and PROGRESS_MEMO_KEY
        in event.workflow_properties_modified_event_attributes.upserted_memo.fields
    ]
    assert len(modified) == 16  # step_started and step_finished of the eight steps


@recording
async def test_record_tenant_provisioning_compensation(
    api: Client,
    token: TokenFactory,
    worker_with: WorkerFactory,
    temporal_client: TemporalClient,
) -> None:
    async with worker_with(failing(CREATE_TENANT_STORAGE_ACTIVITY)):
        response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
        final = await wait_for_status(api, token(), response.headers["Location"])
    assert final["status"] == "failed"
    await _save(temporal_client, final["id"], "tenant_provisioning_workflow--compensated")


@recording
async def test_record_tenant_provisioning_cancel(
    api: Client,
    token: TokenFactory,
    worker_with: WorkerFactory,
    temporal_client: TemporalClient,
) -> None:
    async with worker_with(activation_hangs):
        response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
        location = response.headers["Location"]
        await wait_for_step(api, token(), location, "activate_tenant")
        await api.post(f"{location}/cancel", headers=auth(token()))
        final = await wait_for_status(api, token(), location)
    assert final["status"] == "cancelled"
    await _save(temporal_client, final["id"], "tenant_provisioning_workflow--cancelled")


@recording
async def test_record_tenant_deprovisioning(
    api: Client, token: TokenFactory, tenants_worker: Worker, temporal_client: TemporalClient
) -> None:
    response = await api.post(
        "/v1/tenants", json=BODY, headers={**auth(token()), "Prefer": "wait=30"}
    )
    tenant_id = (await response.json())["result"]["tenant_id"]
    removal = await api.delete(
        f"/v1/tenants/{tenant_id}?export=true", headers={**auth(token()), "Prefer": "wait=30"}
    )
    final = await removal.json()
    assert final["status"] == "succeeded"
    await _save(temporal_client, final["id"], "tenant_deprovisioning_workflow--succeeded")
