"""The workflow sandbox, with our contracts passed through.

Passing ``adx_core`` through means workflow code and the interceptor share one module
instance, so the caller context set by the interceptor is the one workflows see.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass

import temporalio.workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


@dataclass(frozen=True)
class _ValidatingRunner(SandboxedWorkflowRunner):
    """The SDK's sandboxed runner, with no garbage collection while a worker validates its
    workflows at start.

    Before Python 3.12 the per-module import lock is not re-entrant (CPython issue 91351),
    and the sandbox routes every import through ``importlib``. A collection that runs in
    the middle of the validation import can run a finalizer that imports (the warning of an
    unclosed resource or of a coroutine never awaited), which re-enters the lock:
    ``KeyError(<thread id>)`` and "Failed validating workflow", so the worker does not
    start (temporalio/sdk-python#585). Validation takes milliseconds, once per workflow
    type per worker; the collector resumes right after.
    """

    def prepare_workflow(self, defn: temporalio.workflow._Definition) -> None:
        if sys.version_info >= (3, 12) or not gc.isenabled():
            super().prepare_workflow(defn)
            return
        gc.disable()
        try:
            super().prepare_workflow(defn)
        finally:
            gc.enable()


def workflow_runner() -> SandboxedWorkflowRunner:
    return _ValidatingRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("adx_core")
    )
