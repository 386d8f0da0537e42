"""Temporal's Worker Deployment API, as the fleet uses it: which version of a deployment is
current, which versions have registered pollers, and making a version current.

The rollout tooling (``adx rollout``) and the versioning tests build on these; the SDK
offers the raw RPCs only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.enums.v1 import VersionDrainageStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")


@dataclass(frozen=True)
class VersionState:
    build_id: str
    # "draining": pinned executions are still open on it; "drained": none, safe to remove;
    # "" while it is current or ramping (or has never been either).
    drainage: str
    # When it stopped being current (seconds since the epoch), 0 if it never was.
    last_current: float


_DRAINAGE = {
    VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINING: "draining",
    VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED: "drained",
}


@dataclass(frozen=True)
class DeploymentState:
    name: str
    current_build_id: str | None
    ramping_build_id: str | None
    ramping_percent: float
    # Every version the deployment knows (a version appears once its pollers registered).
    build_ids: tuple[str, ...]
    versions: tuple[VersionState, ...] = ()

    def previous_build_id(self) -> str | None:
        """The version that was current most recently before the current one."""
        earlier = [
            v for v in self.versions if v.build_id != self.current_build_id and v.last_current
        ]
        return max(earlier, key=lambda v: v.last_current).build_id if earlier else None


async def describe(client: Client, deployment_name: str) -> DeploymentState | None:
    """The deployment, or ``None`` if no worker has joined it yet."""
    request = DescribeWorkerDeploymentRequest(
        namespace=client.namespace, deployment_name=deployment_name
    )
    try:
        response = await _while_throttled(
            lambda: client.workflow_service.describe_worker_deployment(request)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    info = response.worker_deployment_info
    routing = info.routing_config
    return DeploymentState(
        name=info.name,
        current_build_id=routing.current_deployment_version.build_id or None,
        ramping_build_id=routing.ramping_deployment_version.build_id or None,
        ramping_percent=routing.ramping_version_percentage,
        build_ids=tuple(s.deployment_version.build_id for s in info.version_summaries),
        versions=tuple(_version(summary) for summary in info.version_summaries),
    )


def _version(summary: WorkerDeploymentInfo.WorkerDeploymentVersionSummary) -> VersionState:
    last = summary.last_current_time
    return VersionState(
        build_id=summary.deployment_version.build_id,
        drainage=_DRAINAGE.get(summary.drainage_status, ""),
        last_current=last.ToSeconds() if summary.HasField("last_current_time") else 0,
    )


async def wait_for_version(
    client: Client, deployment_name: str, build_id: str, within: float
) -> None:
    """Return once ``build_id``'s pollers have registered with the deployment: a version
    becomes current only then."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        state = await describe(client, deployment_name)
        if state is not None and build_id in state.build_ids:
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError(f"no pollers of {deployment_name}.{build_id} after {within:.0f} s")
        # The server limits requests per deployment: ask at a modest pace.
        await asyncio.sleep(1.0)


async def set_current(
    client: Client, deployment_name: str, build_id: str, identity: str = "adx-rollout"
) -> None:
    """Route new executions (and AUTO_UPGRADE ones) to ``build_id``; PINNED executions stay
    on the version that started them."""
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace,
        deployment_name=deployment_name,
        build_id=build_id,
        identity=identity,
    )
    await _while_throttled(
        lambda: client.workflow_service.set_worker_deployment_current_version(request)
    )


async def set_ramping(
    client: Client,
    deployment_name: str,
    build_id: str,
    percent: float,
    identity: str = "adx-rollout",
) -> None:
    """Send ``percent`` of new executions to ``build_id``; an empty build id with 0 stops
    the ramp (everything goes to the current version again)."""
    request = SetWorkerDeploymentRampingVersionRequest(
        namespace=client.namespace,
        deployment_name=deployment_name,
        build_id=build_id,
        percentage=percent,
        identity=identity,
    )
    await _while_throttled(
        lambda: client.workflow_service.set_worker_deployment_ramping_version(request)
    )


async def _while_throttled(call: Callable[[], Awaitable[T]], within: float = 60.0) -> T:
    """The server limits the requests to one deployment and answers the rest with
    RESOURCE_EXHAUSTED ("too many requests issued to Worker Deployment"): try again,
    backing off, rather than fail a rollout on it."""
    deadline = asyncio.get_running_loop().time() + within
    delay = 0.5
    while True:
        try:
            return await call()
        except RPCError as err:
            if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                raise
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def execution_build_id(description: WorkflowExecutionDescription) -> str | None:
    """The build id an execution runs on (versioned workers only)."""
    info = description.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id or None
