"""Record replay histories of the users workflows from real runs (ADX_RECORD_HISTORIES=1).

tests/replay/test_replay.py replays every recorded history against today's code.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowHistory
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Replayer

from adx_core.settings import Settings
from adx_core.temporal.client import data_converter, interceptors
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from adx_workers.users.activities import UserActivities
from adx_workers.users.worker import WORKFLOWS
from tests.integration.users.conftest import NoCache, UsersWorkerFactory, World, bearer, failing

HISTORIES = Path(__file__).resolve().parents[2] / "replay" / "histories"
WAIT = {"Prefer": "wait=20"}
Api = TestClient[web.Request, web.Application]

pytestmark = pytest.mark.skipif(
    os.environ.get("ADX_RECORD_HISTORIES") != "1",
    reason="set ADX_RECORD_HISTORIES=1 to record histories from real runs",
)


async def _save(client: TemporalClient, workflow_id: str, name: str, settings: Settings) -> None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    # Check it replays before keeping it.
    await Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        data_converter=data_converter(settings),
        interceptors=interceptors(),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    ).replay_workflow(WorkflowHistory.from_json(name, history.to_json()))
    await asyncio.to_thread((HISTORIES / f"{name}.json").write_text, history.to_json())


async def _scene(world: World) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    acme = await world.tenant("acme")
    globex = await world.tenant("globex")
    ada = await world.user(
        "ada@example.test", [(acme, "tenant-admin"), (globex, "member")], active=acme
    )
    bob = await world.user("bob@example.test", [(acme, "member")], active=acme)
    return acme, globex, ada, bob


def _real(resources: WorkerResources, settings: Settings) -> UserActivities:
    return UserActivities(resources.sessions, settings, NoCache())


@pytest.mark.parametrize("case", ["succeeded", "compensated"])
async def test_record_users_workflows(
    case: str,
    api: Api,
    world: World,
    users_worker_with: UsersWorkerFactory,
    resources: WorkerResources,
    settings: Settings,
    temporal_client: TemporalClient,
    mailbox: Any,
) -> None:
    acme, globex, ada, bob = await _scene(world)
    real = _real(resources, settings)
    admin = {**bearer(world.token(ada, acme, "tenant-admin")), **WAIT}
    carol = {"email": "carol@example.test", "name": "Carol", "role": "member"}
    fakes = (
        [
            failing(real.create_invitation, after_work=True),
            failing(real.revoke_user_sessions, after_work=False),
            failing(real.issue_session_token, after_work=True),
        ]
        if case == "compensated"
        else []
    )
    async with users_worker_with(*fakes):
        onboarding = await (await api.post("/v1/users", json=carol, headers=admin)).json()
        removal = await (await api.delete(f"/v1/users/{bob}", headers=admin)).json()
        switch = await api.post(
            "/v1/me/active-tenant", json={"tenant_id": str(globex)}, headers=admin
        )
        switched = await switch.json(content_type=None)
    expected = "succeeded" if case == "succeeded" else "failed"
    assert onboarding["status"] == expected, onboarding
    assert removal["status"] == expected, removal
    switch_id = switched["operation"].rsplit("/", 1)[1] if case == "succeeded" else None
    if case == "compensated":
        assert switch.status == 500
        ids = [
            wf.id
            async for wf in temporal_client.list_workflows(
                f'TaskQueue="{settings.task_queue("users")}" AND '
                'WorkflowType="tenant_switch_workflow"'
            )
        ]
        (switch_id,) = ids
    await _save(temporal_client, onboarding["id"], f"user_onboarding_workflow--{case}", settings)
    await _save(temporal_client, removal["id"], f"user_update_workflow--{case}", settings)
    assert switch_id is not None
    await _save(temporal_client, switch_id, f"tenant_switch_workflow--{case}", settings)
