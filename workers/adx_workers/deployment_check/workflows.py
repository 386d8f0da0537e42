"""deployment_check_workflow: run on a new worker build, pinned to it, before it gets
traffic. It succeeds only if that build's workflow code loads and runs (this very
workflow), its activities are served, and every dependency check passes on its pods."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from adx_core.contracts.deployment import (
    CHECK_DEPENDENCIES_ACTIVITY,
    DEPLOYMENT_CHECK_FAILED,
    DEPLOYMENT_CHECK_WORKFLOW,
    DeploymentCheckResult,
)

# A check answers in seconds or the dependency is not there; a retry covers a pod that
# was restarting, not a dependency that is missing.
_CHECK_TIMEOUT = timedelta(seconds=60)
_CHECK_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))


@workflow.defn(name=DEPLOYMENT_CHECK_WORKFLOW)
class DeploymentCheckWorkflow:
    @workflow.run
    async def run(self) -> DeploymentCheckResult:
        result: DeploymentCheckResult = await workflow.execute_activity(
            CHECK_DEPENDENCIES_ACTIVITY,
            start_to_close_timeout=_CHECK_TIMEOUT,
            retry_policy=_CHECK_RETRY,
            result_type=DeploymentCheckResult,
        )
        if result.failed:
            summary = "; ".join(f"{check.name}: {check.detail}" for check in result.failed)
            raise ApplicationError(
                f"{result.service} build {result.build_id or '(unversioned)'} failed "
                f"{len(result.failed)} of {len(result.checks)} checks: {summary}",
                result,
                type=DEPLOYMENT_CHECK_FAILED,
                non_retryable=True,
            )
        return result
