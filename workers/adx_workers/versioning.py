"""Worker Versioning: which Worker Deployment and version a worker joins.

Every service is its own deployment, ``adx-<service>`` (behind the task queue prefix, so
that side-by-side fleets, and tests, never share one), and the build id names the version.
Short workflows are PINNED through the deployment's default behaviour: a provisioning or an
upload finishes on the code that started it. Monitoring, which runs for the tenant's life,
declares AUTO_UPGRADE on its definition and moves to the current version at its next task;
it changes only through ``workflow.patched``.
"""

from __future__ import annotations

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

from adx_core.settings import Settings


def deployment_name(settings: Settings, service: str) -> str:
    return f"{settings.task_queue_prefix}adx-{service}"


def deployment_config(settings: Settings, service: str) -> WorkerDeploymentConfig | None:
    """The worker's deployment version, or ``None`` for an unversioned worker (no build id)."""
    if not settings.worker_build_id:
        return None
    version = WorkerDeploymentVersion(deployment_name(settings, service), settings.worker_build_id)
    return WorkerDeploymentConfig(
        version=version,
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )
