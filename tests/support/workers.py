"""Workers with some activities replaced by fakes registered under the same name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker, WorkerDeploymentConfig

from adx_workers.files import worker as files_worker
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from adx_workers.tenants.worker import activities_for, workflows

WorkerFactory = Callable[..., Worker]


def activity_name(fn: Callable[..., Any]) -> str:
    definition = getattr(fn, "__temporal_activity_definition")
    return str(definition.name)


def tenants_worker_with(
    client: Client,
    resources: WorkerResources,
    task_queue: str,
    overrides: Sequence[Callable[..., Any]],
    deployment_config: WorkerDeploymentConfig | None = None,
) -> Worker:
    activities = {activity_name(a): a for a in activities_for(resources)}
    for fake in overrides:
        assert activity_name(fake) in activities, f"no real activity named {activity_name(fake)}"
        activities[activity_name(fake)] = fake
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows(versioned=deployment_config is not None),
        deployment_config=deployment_config,
        activities=list(activities.values()),
        workflow_runner=workflow_runner(),
        # Fakes that wait for a cancel learn of it on their next heartbeat; don't throttle.
        default_heartbeat_throttle_interval=timedelta(milliseconds=200),
        max_heartbeat_throttle_interval=timedelta(milliseconds=200),
    )


def files_worker_with(
    client: Client,
    resources: WorkerResources,
    task_queue: str,
    overrides: Sequence[Callable[..., Any]],
) -> Worker:
    """The files worker with some activities replaced by fakes of the same name."""
    activities = {activity_name(a): a for a in files_worker.activities_for(resources)}
    for fake in overrides:
        assert activity_name(fake) in activities, f"no real activity named {activity_name(fake)}"
        activities[activity_name(fake)] = fake
    return Worker(
        client,
        task_queue=task_queue,
        workflows=files_worker.WORKFLOWS,
        activities=list(activities.values()),
        workflow_runner=workflow_runner(),
        default_heartbeat_throttle_interval=timedelta(milliseconds=200),
        max_heartbeat_throttle_interval=timedelta(milliseconds=200),
    )
