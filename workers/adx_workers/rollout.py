"""Promoting a new worker build: wait for its pollers, replay recent real histories against
its code, and only then make it the deployment's current version.

The replay runs in the process that promotes, which is the new build (the chart's hook Job
runs ``adx rollout`` from the new image): a change that would take a running execution down
another path (non-determinism) is found against the very histories the server holds, and
the version that was current stays current.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from temporalio.client import Client, WorkflowHistory
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Replayer, WorkflowRunner

from adx_core.settings import Settings
from adx_core.temporal import deployments
from adx_core.temporal.interceptor import ContextInterceptor
from adx_workers.sandbox import workflow_runner
from adx_workers.versioning import deployment_name

# Histories replayed per workflow type, and at most in all: recent ones, newest first.
PER_TYPE = 10
MAX_EXECUTIONS = 200


@dataclass(frozen=True)
class ReplayFailure:
    workflow_type: str
    workflow_id: str
    run_id: str
    error: str


@dataclass(frozen=True)
class GateResult:
    replayed: int
    failures: list[ReplayFailure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


class PromotionRefusedError(Exception):
    def __init__(self, build_id: str, result: GateResult) -> None:
        first = result.failures[0]
        super().__init__(
            f"{build_id} not promoted: {len(result.failures)} of {result.replayed} histories "
            f"do not replay on it (first: {first.workflow_type} {first.workflow_id}: "
            f"{first.error})"
        )
        self.result = result


async def recent_histories(
    client: Client, task_queue: str, per_type: int = PER_TYPE
) -> AsyncIterator[WorkflowHistory]:
    """The newest executions of each workflow type that ran on ``task_queue``."""
    taken: Counter[str] = Counter()
    async for execution in client.list_workflows(
        f"TaskQueue = '{task_queue}'", limit=MAX_EXECUTIONS
    ):
        if taken[execution.workflow_type] >= per_type:
            continue
        taken[execution.workflow_type] += 1
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        yield await handle.fetch_history()


async def replay_gate(
    client: Client,
    task_queue: str,
    workflows: Sequence[type],
    *,
    runner: WorkflowRunner | None = None,
    per_type: int = PER_TYPE,
) -> GateResult:
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=runner or workflow_runner(),
        data_converter=client.data_converter,
        # The workers' own: context propagation and tracing, as the histories were made.
        interceptors=[ContextInterceptor(), TracingInterceptor()],
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )
    replayed = 0
    failures: list[ReplayFailure] = []
    histories = recent_histories(client, task_queue, per_type)
    async with replayer.workflow_replay_iterator(histories) as results:
        async for result in results:
            replayed += 1
            if result.replay_failure is not None:
                history = result.history
                failures.append(
                    ReplayFailure(
                        workflow_type=_workflow_type(history),
                        workflow_id=history.workflow_id,
                        run_id=history.events[
                            0
                        ].workflow_execution_started_event_attributes.original_execution_run_id,
                        error=str(result.replay_failure)[:500],
                    )
                )
    return GateResult(replayed, failures)


def _workflow_type(history: WorkflowHistory) -> str:
    started = history.events[0].workflow_execution_started_event_attributes
    return started.workflow_type.name


async def promote(
    client: Client,
    settings: Settings,
    service: str,
    build_id: str,
    workflows: Sequence[type],
    *,
    runner: WorkflowRunner | None = None,
    pollers_within: float = 120.0,
) -> GateResult:
    """Make ``build_id`` current for ``service`` once its pollers are there and recent
    histories replay on ``workflows``; otherwise raise, leaving the current version as it
    is."""
    name = deployment_name(settings, service)
    await deployments.wait_for_version(client, name, build_id, pollers_within)
    result = await replay_gate(client, settings.task_queue(service), workflows, runner=runner)
    if not result.passed:
        raise PromotionRefusedError(build_id, result)
    await deployments.set_current(client, name, build_id)
    return result
