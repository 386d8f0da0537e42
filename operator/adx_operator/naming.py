"""The names the operator shares with Kubernetes and with Temporal.

Workflow ids are derived from the resource's uid (and, for a plan change, its generation),
never chosen at random: a repeated event or a restarted operator computes the same id and
finds the workflow it started before instead of starting a second one.
"""

from __future__ import annotations

GROUP = "adx.dev"
VERSION = "v1alpha1"
TENANTS = "tenants"
MIGRATIONS = "storagemigrations"
# Kept on every Tenant and StorageMigration until its clean-up workflow has completed.
FINALIZER = "adx.dev/finalizer"
# Who the audit log names for what the operator starts (an actor id, at most 64 chars).
ACTOR = "k8s:adx-operator"

# Memo keys on the workflows the operator starts: which resource and generation asked.
MEMO_UID = "adx.k8s.uid"
MEMO_GENERATION = "adx.k8s.generation"
MEMO_RESOURCE = "adx.k8s.resource"
# The spec fields a provisioning run was started with (those only provisioning applies).
MEMO_SPEC = "adx.k8s.spec"


def upgrade_workflow_id(uid: str, generation: int) -> str:
    """One plan change per generation of a Tenant: a new generation (a later edit of the
    spec) is a new attempt, a repeated event for the same one is not."""
    return f"tenant-upgrade-{uid}-gen-{generation}"


def upgrade_generation(workflow_id: str, uid: str) -> int | None:
    """The generation an operator-started upgrade id names, or ``None`` for another id."""
    prefix = f"tenant-upgrade-{uid}-gen-"
    tail = workflow_id.removeprefix(prefix)
    if tail == workflow_id or not tail.isdigit():
        return None
    return int(tail)
