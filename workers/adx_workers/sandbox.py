"""The workflow sandbox, with our contracts passed through.

Passing ``adx_core`` through means workflow code and the interceptor share one module
instance, so the caller context set by the interceptor is the one workflows see.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("adx_core")
    )
