"""The worker that serves the tenants task queue."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.contracts.tenants import TASK_QUEUE
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from adx_workers.tenants.activities import TenantActivities
from adx_workers.tenants.workflows import TenantProvisioningWorkflow

WORKFLOWS = [TenantProvisioningWorkflow]


def build_worker(
    client: Client, resources: WorkerResources, task_queue: str = TASK_QUEUE
) -> Worker:
    activities = TenantActivities(resources.sessions, resources.storage)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        workflow_runner=workflow_runner(),
        graceful_shutdown_timeout=resources.graceful_shutdown,
    )
