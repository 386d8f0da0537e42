"""What every handler needs: settings, the Temporal client, and the operator's pacing."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from adx_core.settings import Settings


@dataclass(frozen=True)
class Pacing:
    # How often a resource with a workflow in flight is looked at (status mirroring).
    poll_seconds: float = 1.0
    # How often a settled resource (Ready, Failed, Succeeded) is checked against Temporal
    # for drift: a workflow terminated or reset behind the operator's back.
    resync_seconds: float = 60.0
    # How long a monitoring status query may take before the answer counts as unknown.
    query_seconds: float = 2.0
    # How long a delete handler waits in itself for its clean-up workflow before it hands
    # back to kopf for a retry (see deletion.py).
    hold_seconds: float = 30.0


@dataclass(frozen=True)
class OperatorContext:
    settings: Settings
    client: Client
    pacing: Pacing = Pacing()
