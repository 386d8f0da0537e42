"""Heartbeats while an activity waits on something that does not report progress itself:
a decode in a thread, clamd scanning what it was sent, a server-side copy.

Without them a long wait looks like a dead worker once the heartbeat timeout passes, and
the attempt would be retried for ever; with them a cancel (a late optional step, a
cancelled upload) also reaches the activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")

BEAT_SECONDS = 5.0


async def beating(work: Awaitable[T], every: float = BEAT_SECONDS) -> T:
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        if not task.done():
            task.cancel()
