"""Holding the finalizer while a clean-up workflow runs.

The delete handler waits inside itself, reconciling every poll, for up to
``Pacing.hold_seconds``; only then does it hand back to kopf with a TemporaryError. A
handler that raised at every poll would cost two writes to the resource per retry (kopf
records the retry and wakes itself through annotations), and every write reaches every
watcher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from adx_operator.context import Pacing

# One reconcile against the status as last written; True once the finalizer may go.
Attempt = Callable[[Mapping[str, Any]], Awaitable[bool]]


async def hold_until_released(
    attempt: Attempt, status: Mapping[str, Any], patch: kopf.Patch, pacing: Pacing, what: str
) -> None:
    shown = dict(status)
    deadline = time.monotonic() + pacing.hold_seconds
    while True:
        released = await attempt(shown)
        # The patch is applied when the handler returns; later rounds compare against it,
        # so that an unchanged phase is neither written nor announced again.
        shown.update(patch.get("status") or {})
        if released:
            return
        if time.monotonic() >= deadline:
            raise kopf.TemporaryError(f"{what} still running", delay=pacing.poll_seconds)
        await asyncio.sleep(pacing.poll_seconds)
