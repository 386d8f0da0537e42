"""Temporal's Worker Deployment API, as the fleet uses it: which version of a deployment is
current, which versions have registered pollers, and making a version current.

The rollout tooling (``adx rollout``) and the versioning tests build on these; the SDK
offers the raw RPCs only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError, RPCStatusCode


@dataclass(frozen=True)
class DeploymentState:
    name: str
    current_build_id: str | None
    ramping_build_id: str | None
    ramping_percent: float
    # Every version the deployment knows (a version appears once its pollers registered).
    build_ids: tuple[str, ...]


async def describe(client: Client, deployment_name: str) -> DeploymentState | None:
    """The deployment, or ``None`` if no worker has joined it yet."""
    try:
        response = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=client.namespace, deployment_name=deployment_name
            )
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
        await asyncio.sleep(0.2)


async def set_current(
    client: Client, deployment_name: str, build_id: str, identity: str = "adx-rollout"
) -> None:
    """Route new executions (and AUTO_UPGRADE ones) to ``build_id``; PINNED executions stay
    on the version that started them."""
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=deployment_name,
            build_id=build_id,
            identity=identity,
        )
    )


def execution_build_id(description: WorkflowExecutionDescription) -> str | None:
    """The build id an execution runs on (versioned workers only)."""
    info = description.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id or None
