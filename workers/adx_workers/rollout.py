"""Promoting a new worker build: wait for its pollers, replay recent real histories against
its code, and only then make it the deployment's current version.

The replay runs in the process that promotes, which is the new build (the chart's hook Job
runs ``adx rollout`` from the new image): a change that would take a running execution down
another path (non-determinism) is found against the very histories the server holds, and
the version that was current stays current.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHistory,
)
from temporalio.common import (
    HeaderCodecBehavior,
    PinnedVersioningOverride,
    WorkerDeploymentVersion,
)
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


class Strategy(StrEnum):
    MANUAL = "Manual"  # check everything, change no routing
    ALL_AT_ONCE = "AllAtOnce"
    PROGRESSIVE = "Progressive"


@dataclass(frozen=True)
class Progressive:
    # Percentages of new executions sent to the new version, one step after another.
    steps: tuple[float, ...] = (10.0, 50.0)
    step_seconds: float = 60.0
    # Failed (or timed out, or terminated) over closed executions of the new version that
    # started during a step; above it, the ramp stops and routing goes back.
    max_failure_rate: float = 0.05


class PromotionRefusedError(Exception):
    def __init__(self, build_id: str, reason: str, result: GateResult | None = None) -> None:
        super().__init__(f"{build_id} not promoted: {reason}")
        self.result = result


def _replay_refusal(result: GateResult) -> str:
    first = result.failures[0]
    return (
        f"{len(result.failures)} of {result.replayed} histories do not replay on it "
        f"(first: {first.workflow_type} {first.workflow_id}: {first.error})"
    )


def workflow_type_of(cls: type) -> str:
    name: str = getattr(cls, "__temporal_workflow_definition").name
    return name


async def recent_histories(
    client: Client, task_queue: str, types: set[str], per_type: int = PER_TYPE
) -> AsyncIterator[WorkflowHistory]:
    """The newest executions of each of ``types`` that ran on ``task_queue``. Other types
    (a smoke-test gate workflow, one the new build no longer serves) never run on it."""
    taken: Counter[str] = Counter()
    async for execution in client.list_workflows(
        f"TaskQueue = '{task_queue}'", limit=MAX_EXECUTIONS
    ):
        if execution.workflow_type not in types or taken[execution.workflow_type] >= per_type:
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
    types = {workflow_type_of(cls) for cls in workflows}
    histories = recent_histories(client, task_queue, types, per_type)
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
    strategy: Strategy = Strategy.ALL_AT_ONCE,
    progressive: Progressive | None = None,
    gate_workflow: str | None = None,
    runner: WorkflowRunner | None = None,
    pollers_within: float = 120.0,
    report: Callable[[str], None] = lambda _: None,
) -> GateResult:
    """Make ``build_id`` current for ``service`` once its pollers are there, recent
    histories replay on ``workflows`` and the gate workflow (if any) succeeds on it; with
    Progressive, through ramp steps whose failure rate stays under the limit. A refusal
    raises and leaves the routing as it was before."""
    name = deployment_name(settings, service)
    queue = settings.task_queue(service)
    await deployments.wait_for_version(client, name, build_id, pollers_within)
    report(f"{name}.{build_id}: pollers registered")
    result = await replay_gate(client, queue, workflows, runner=runner)
    if not result.passed:
        raise PromotionRefusedError(build_id, _replay_refusal(result), result)
    report(f"{name}.{build_id}: {result.replayed} recent histories replay on this build")
    if gate_workflow:
        await _run_gate_workflow(client, name, queue, build_id, gate_workflow)
        report(f"{name}.{build_id}: gate workflow {gate_workflow} succeeded on it")
    if strategy is Strategy.MANUAL:
        report(f"{name}.{build_id}: Manual, routing unchanged")
        return result
    if strategy is Strategy.PROGRESSIVE:
        await _ramp(client, name, queue, build_id, progressive or Progressive(), report)
    await deployments.set_current(client, name, build_id)
    report(f"{name}.{build_id}: current")
    return result


async def _ramp(
    client: Client,
    name: str,
    queue: str,
    build_id: str,
    plan: Progressive,
    report: Callable[[str], None],
) -> None:
    try:
        for percent in plan.steps:
            since = datetime.now(UTC)
            await deployments.set_ramping(client, name, build_id, percent)
            report(f"{name}.{build_id}: ramping {percent:g}%")
            await asyncio.sleep(plan.step_seconds)
            failed, closed = await failures_since(client, name, queue, build_id, since)
            if closed and failed / closed > plan.max_failure_rate:
                raise PromotionRefusedError(
                    build_id,
                    f"{failed} of {closed} executions failed at {percent:g}% "
                    f"(limit {plan.max_failure_rate:.0%}); the ramp is stopped",
                )
            report(f"{name}.{build_id}: {failed} of {closed} failed at {percent:g}%")
    except BaseException:
        # Whatever stopped the ramp (a refusal, an error, a cancel), new executions go back
        # to the current version alone.
        await deployments.set_ramping(client, name, "", 0)
        raise


async def failures_since(
    client: Client, name: str, task_queue: str, build_id: str, since: datetime
) -> tuple[int, int]:
    """(failed, closed) executions that ran on ``build_id`` and started on ``task_queue``
    since ``since``, counted by visibility (the server indexes each execution's version as
    ``TemporalWorkerDeploymentVersion``, ``<deployment>:<build id>``)."""
    scope = (
        f"TaskQueue = '{task_queue}' AND TemporalWorkerDeploymentVersion = '{name}:{build_id}'"
        f" AND StartTime >= '{since.isoformat()}'"
    )
    failed = await client.count_workflows(
        f"{scope} AND (ExecutionStatus = 'Failed' OR ExecutionStatus = 'TimedOut'"
        " OR ExecutionStatus = 'Terminated')"
    )
    closed = await client.count_workflows(f"{scope} AND ExecutionStatus != 'Running'")
    return failed.count, closed.count


async def _run_gate_workflow(
    client: Client, name: str, queue: str, build_id: str, workflow_type: str
) -> None:
    """Run ``workflow_type`` (no input) pinned to the new version before it takes traffic."""
    handle = await client.start_workflow(
        workflow_type,
        id=f"rollout-gate-{build_id}-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
        versioning_override=PinnedVersioningOverride(WorkerDeploymentVersion(name, build_id)),
        execution_timeout=timedelta(minutes=5),
    )
    try:
        await handle.result()
    except WorkflowFailureError as err:
        raise PromotionRefusedError(
            build_id, f"the gate workflow {workflow_type} failed on it: {err.cause}"
        ) from None


async def rollback(client: Client, settings: Settings, service: str, to: str | None = None) -> str:
    """Stop any ramp and make ``to`` (default: the version current before) current again;
    PINNED executions of the version rolled back from stay on it and finish there."""
    name = deployment_name(settings, service)
    state = await deployments.describe(client, name)
    if state is None:
        raise LookupError(f"no worker deployment {name}")
    target = to or state.previous_build_id()
    if target is None:
        raise LookupError(f"{name} has no earlier current version to go back to")
    if state.ramping_build_id:
        await deployments.set_ramping(client, name, "", 0)
    await deployments.set_current(client, name, target)
    return target
