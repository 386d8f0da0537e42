"""The worker that serves the files task queue: storage activities and migrations."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.contracts.storage import FILES_TASK_QUEUE
from adx_workers.files.migration import FileMigrationWorkflow
from adx_workers.files.migration_activities import MigrationActivities
from adx_workers.files.storage_activities import StorageActivities
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner

WORKFLOWS = [FileMigrationWorkflow]


def build_worker(
    client: Client, resources: WorkerResources, task_queue: str = FILES_TASK_QUEUE
) -> Worker:
    storage = StorageActivities(resources.stores)
    migration = MigrationActivities(resources.sessions, resources.stores)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[*storage.all(), *migration.all()],
        workflow_runner=workflow_runner(),
        graceful_shutdown_timeout=resources.graceful_shutdown,
        # Each batch already copies with its own bounded parallelism.
        max_concurrent_activities=16,
    )
