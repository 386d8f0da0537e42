"""Reading a stored object as a local file, for the libraries that need one (Pillow, pypdf,
zipfile). The object streams into a private temporary directory that is removed on exit,
so memory stays at one chunk whatever the size; callers bound the size first."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio import activity

from adx_core.storage import StorageProvider

_HEARTBEAT_EVERY = 8 * 1024 * 1024


@asynccontextmanager
async def spooled(
    store: StorageProvider, key: str, *, length: int | None = None
) -> AsyncIterator[Path]:
    """The object (or its first ``length`` bytes) as a file that exists inside the block."""
    with tempfile.TemporaryDirectory(prefix="adx-spool-") as folder:
        path = Path(folder) / "object"
        handle = await asyncio.to_thread(path.open, "wb")
        try:
            written = 0
            since_beat = 0
            async for chunk in store.get(key, length=length):
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
                since_beat += len(chunk)
                if since_beat >= _HEARTBEAT_EVERY and activity.in_activity():
                    activity.heartbeat(written)
                    since_beat = 0
        finally:
            await asyncio.to_thread(handle.close)
        yield path
