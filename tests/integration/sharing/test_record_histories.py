"""Record file_sharing_workflow histories for tests/replay (ADX_RECORD_HISTORIES=1), and
replay what is recorded against today's workflow code."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Interceptor as WorkerInterceptor
from temporalio.worker import Replayer, Worker

from adx_core.settings import Settings
from adx_core.temporal.client import data_converter, interceptors
from adx_workers.files.sharing import FileSharingWorkflow
from adx_workers.sandbox import workflow_runner
from tests.integration.sharing.conftest import Api, Scene, share
from tests.replay.test_replay import HISTORIES, recording
from tests.support.mail import Mailbox


async def _save(client: Client, workflow_id: str, name: str) -> None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    await asyncio.to_thread((HISTORIES / f"{name}.json").write_text, history.to_json())


@recording
async def test_record_sharing(
    api: Api, scene: Scene, sharing_worker: Worker, mailbox: Mailbox, temporal_client: Client
) -> None:
    granted = await share(
        api,
        scene,
        {
            "grantees": [
                {"kind": "user", "id": str(scene.user("bob"))},
                {"kind": "group", "id": str(scene.team)},
            ],
            "message": "Have a look",
        },
    )
    assert granted["status"] == "succeeded"
    await _save(temporal_client, granted["id"], "file_sharing_workflow--granted")

    mailbox.refuse.add(scene.email("partner"))
    link = await share(
        api,
        scene,
        {"link": True, "expires_in_seconds": 600, "notify": [scene.email("partner")]},
    )
    assert link["status"] == "succeeded"
    await _save(temporal_client, link["id"], "file_sharing_workflow--link-mail-refused")

    refused = await share(
        api, scene, {"grantees": [{"kind": "user", "id": str(scene.user("eve"))}]}
    )
    assert refused["status"] == "failed"
    await _save(temporal_client, refused["id"], "file_sharing_workflow--refused")


def _recorded() -> list[Path]:
    return sorted(HISTORIES.glob("file_sharing_workflow--*.json"))


@pytest.mark.parametrize("path", _recorded(), ids=lambda p: p.stem)
async def test_sharing_history_replays(path: Path, migrated: Settings) -> None:
    """The same check tests/replay runs, until the files worker registers the workflow
    (tests/replay replays every history against the workers' WORKFLOWS)."""
    history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
    replayer = Replayer(
        workflows=[FileSharingWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=data_converter(migrated),
        # Both of ours are client and worker interceptors; the replayer uses the latter.
        interceptors=[i for i in interceptors() if isinstance(i, WorkerInterceptor)],
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )
    await replayer.replay_workflow(history)
