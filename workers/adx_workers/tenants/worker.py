"""The worker that serves the tenants task queue: provisioning, deprovisioning, monitoring,
upgrades and payments, plus the notification activity every workflow may call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.contracts.tenants import TASK_QUEUE
from adx_workers.billing import worker as billing
from adx_workers.common.notify import NotificationActivities
from adx_workers.deployment_check.activities import DeploymentCheckActivities
from adx_workers.deployment_check.workflows import DeploymentCheckWorkflow
from adx_workers.monitoring import worker as monitoring
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from adx_workers.tenants.activities import TenantActivities
from adx_workers.tenants.deprovisioning import TenantDeprovisioningWorkflow
from adx_workers.tenants.removal import RemovalActivities
from adx_workers.tenants.workflows import TenantProvisioningWorkflow
from adx_workers.versioning import deployment_config


def workflows(versioned: bool = False) -> list[type]:
    return [
        TenantProvisioningWorkflow,
        TenantDeprovisioningWorkflow,
        *monitoring.workflows(versioned),
        *billing.WORKFLOWS,
        DeploymentCheckWorkflow,
    ]


WORKFLOWS: list[type] = workflows()


def activities_for(resources: WorkerResources) -> list[Callable[..., Any]]:
    return [
        *TenantActivities(resources.sessions, resources.storage).all(),
        *RemovalActivities(resources.sessions, resources.stores).all(),
        *monitoring.activities_for(resources),
        *billing.activities_for(resources, resources.payments),
        NotificationActivities(resources.sessions, resources.notifier).send_notification,
        DeploymentCheckActivities(resources, "tenants").check_dependencies,
    ]


def build_worker(
    client: Client, resources: WorkerResources, task_queue: str = TASK_QUEUE
) -> Worker:
    versioning = deployment_config(resources.settings, "tenants")
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows(versioned=versioning is not None),
        activities=activities_for(resources),
        workflow_runner=workflow_runner(),
        graceful_shutdown_timeout=resources.graceful_shutdown,
        deployment_config=versioning,
    )
