"""The caller's context reaches every part of a workflow tree: the workflow itself, its
activities, child workflows, signal, query and update handlers, and the next run after
continue-as-new."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core import context
from adx_core.settings import Settings
from adx_workers.sandbox import workflow_runner


@dataclass(frozen=True)
class Seen:
    where: str
    correlation_id: str | None
    user_id: str | None
    tenant_id: str | None
    roles: tuple[str, ...]


def _seen(where: str) -> Seen:
    ctx = context.current()
    if ctx is None:
        return Seen(where, None, None, None, ())
    return Seen(where, ctx.correlation_id, ctx.user_id, ctx.tenant_id, ctx.roles)


@activity.defn(name="context_probe_activity")
async def context_probe_activity(where: str) -> Seen:
    return _seen(where)


@workflow.defn(name="context_child_workflow")
class ContextChild:
    @workflow.run
    async def run(self) -> list[Seen]:
        return [_seen("child")]


@workflow.defn(name="context_probe_workflow")
class ContextProbe:
    def __init__(self) -> None:
        self._seen: list[Seen] = []
        self._released = False

    @workflow.signal
    def release(self) -> None:
        self._seen.append(_seen("signal"))
        self._released = True

    @workflow.query
    def probe(self) -> Seen:
        return _seen("query")

    @workflow.update
    def note(self) -> Seen:
        return _seen("update")

    @workflow.run
    async def run(self, generation: int) -> list[Seen]:
        self._seen.append(_seen(f"workflow-{generation}"))
        if generation == 0:
            workflow.continue_as_new(1)
        self._seen.append(
            await workflow.execute_activity(
                context_probe_activity, "activity", start_to_close_timeout=timedelta(seconds=10)
            )
        )
        self._seen.extend(await workflow.execute_child_workflow(ContextChild.run))
        await workflow.wait_condition(lambda: self._released)
        return self._seen


async def test_context_reaches_every_part_of_the_workflow_tree(
    temporal_client: Client, settings: Settings
) -> None:
    task_queue = settings.task_queue("context")
    caller = context.AuthContext(
        correlation_id="req-123", user_id="u-1", tenant_id=str(uuid.uuid4()), roles=("member",)
    )
    expected = (caller.correlation_id, caller.user_id, caller.tenant_id, caller.roles)
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[ContextProbe, ContextChild],
        activities=[context_probe_activity],
        workflow_runner=workflow_runner(),
    ):
        with context.use(caller):
            handle = await temporal_client.start_workflow(
                ContextProbe.run, 0, id=f"context-{uuid.uuid4()}", task_queue=task_queue
            )
            query = await handle.query(ContextProbe.probe)
            update = await handle.execute_update(ContextProbe.note)
            await handle.signal(ContextProbe.release)
            seen = await handle.result()

    by_place = {item.where: item for item in [*seen, query, update]}
    assert set(by_place) == {
        "workflow-1",  # after continue-as-new: the first run's entries went with it
        "activity",
        "child",
        "signal",
        "query",
        "update",
    }
    for where, item in by_place.items():
        assert (item.correlation_id, item.user_id, item.tenant_id, tuple(item.roles)) == expected, (
            where
        )
