"""The worker that serves the users task queue."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.cache import TenantContextCache, cache_from_settings
from adx_core.contracts.users import TASK_QUEUE
from adx_workers.common.notify import NotificationActivities
from adx_workers.deployment_check.activities import DeploymentCheckActivities
from adx_workers.deployment_check.workflows import DeploymentCheckWorkflow
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from adx_workers.users.activities import UserActivities
from adx_workers.users.workflows import (
    TenantSwitchWorkflow,
    UserOnboardingWorkflow,
    UserUpdateWorkflow,
)
from adx_workers.versioning import deployment_config

WORKFLOWS = [
    UserOnboardingWorkflow,
    UserUpdateWorkflow,
    TenantSwitchWorkflow,
    DeploymentCheckWorkflow,
]


def build_worker(
    client: Client,
    resources: WorkerResources,
    task_queue: str = TASK_QUEUE,
    cache: TenantContextCache | None = None,
) -> Worker:
    """``cache``: the tenant-context cache; by default Redis if REDIS_URL is set, else a
    cache in this process."""
    activities = UserActivities(
        resources.sessions, resources.settings, cache or cache_from_settings(resources.settings)
    )
    notifications = NotificationActivities(resources.sessions, resources.notifier)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            *activities.all(),
            notifications.send_notification,
            DeploymentCheckActivities(resources, "users").check_dependencies,
        ],
        workflow_runner=workflow_runner(),
        graceful_shutdown_timeout=resources.graceful_shutdown,
        deployment_config=deployment_config(resources.settings, "users"),
    )
