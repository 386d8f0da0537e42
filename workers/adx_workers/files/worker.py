"""The worker that serves the files task queue: uploads, processing, sharing, storage
activities and migrations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.contracts.storage import FILES_TASK_QUEUE
from adx_core.scanning import scanner_from_settings
from adx_workers.common.notify import NotificationActivities
from adx_workers.deployment_check.activities import DeploymentCheckActivities
from adx_workers.deployment_check.workflows import DeploymentCheckWorkflow
from adx_workers.files.migration import FileMigrationWorkflow
from adx_workers.files.migration_activities import MigrationActivities
from adx_workers.files.processing import FileProcessingWorkflow
from adx_workers.files.processing_activities import ProcessingActivities
from adx_workers.files.records import FileRecordActivities
from adx_workers.files.sharing import FileSharingWorkflow
from adx_workers.files.sharing_activities import SharingActivities
from adx_workers.files.storage_activities import StorageActivities
from adx_workers.files.upload import FileUploadWorkflow
from adx_workers.files.upload_activities import UploadActivities
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from adx_workers.versioning import deployment_config

# Each migration batch and each scan streams with its own bounded parallelism; thumbnails
# and analysis run in threads. Each of them may spool a file of up to ADX_PROCESSING_MAX_BYTES
# to /tmp (the chart sizes the files worker's /tmp for all of them at once).
MAX_CONCURRENT_ACTIVITIES = 16

WORKFLOWS = [
    FileUploadWorkflow,
    FileProcessingWorkflow,
    FileSharingWorkflow,
    FileMigrationWorkflow,
    DeploymentCheckWorkflow,
]


def activities_for(resources: WorkerResources) -> list[Callable[..., Any]]:
    settings = resources.settings
    scanner = scanner_from_settings(settings)
    return [
        *StorageActivities(resources.stores).all(),
        *MigrationActivities(resources.sessions, resources.stores).all(),
        *UploadActivities(resources.sessions, resources.stores, scanner, settings).all(),
        *FileRecordActivities(resources.sessions, resources.stores).all(),
        *ProcessingActivities(resources.stores, settings).all(),
        *SharingActivities(resources.sessions).all(),
        # Shares tell their recipients.
        NotificationActivities(resources.sessions, resources.notifier).send_notification,
        # The files worker's build also needs its scanner before it takes uploads.
        DeploymentCheckActivities(resources, "files", scanner).check_dependencies,
    ]


def build_worker(
    client: Client, resources: WorkerResources, task_queue: str = FILES_TASK_QUEUE
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities_for(resources),
        workflow_runner=workflow_runner(),
        graceful_shutdown_timeout=resources.graceful_shutdown,
        max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
        deployment_config=deployment_config(resources.settings, "files"),
    )
