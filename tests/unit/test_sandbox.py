"""Workers validate their workflows with the garbage collector held off (Python < 3.12),
so no finalizer can import in the middle of a sandboxed import; see adx_workers.sandbox."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import temporalio.workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from adx_workers.files.upload import FileUploadWorkflow
from adx_workers.sandbox import workflow_runner

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="the import lock is re-entrant from Python 3.12 on"
)


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The collections that start while the test runs, with one at nearly every
    allocation."""
    started: list[int] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    threshold = gc.get_threshold()
    gc.set_threshold(1)
    gc.callbacks.append(watch)
    try:
        yield started
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*threshold)


async def test_no_collection_runs_while_a_worker_validates_its_workflows(
    collections: list[int],
) -> None:
    definition = temporalio.workflow._Definition.must_from_class(FileUploadWorkflow)
    plain = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("adx_core")
    )
    ours = workflow_runner()
    collections.clear()
    plain.prepare_workflow(definition)
    assert collections, "the SDK's runner collects during validation: the test proves nothing"
    collections.clear()
    ours.prepare_workflow(definition)
    assert collections == []
    assert gc.isenabled()
