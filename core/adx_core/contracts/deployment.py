"""The deployment check's contract: the gate workflow ``adx rollout promote`` runs, pinned to
a new worker build, before that build takes any traffic.

Every worker serves it on its own task queue. Its activity runs on the new build's pods (a
pinned workflow's activities are dispatched to its version), so it checks what that build
was deployed with: its database role and schema, its storage, its scanner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEPLOYMENT_CHECK_WORKFLOW = "deployment_check_workflow"
CHECK_DEPENDENCIES_ACTIVITY = "check_dependencies_activity"

# The workflow's failure type when a check fails: the gate refuses the build.
DEPLOYMENT_CHECK_FAILED = "DeploymentCheckFailed"


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    ok: bool
    detail: str
    duration_ms: int


@dataclass(frozen=True)
class DeploymentCheckResult:
    service: str
    # The build whose pods ran the checks ("" for an unversioned worker).
    build_id: str
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.ok]
