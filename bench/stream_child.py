"""One provider's put and get of a large object, in a process of its own.

``python -m bench.stream_child KIND SIZE_BYTES`` reads its settings from the ``ADX_*``
environment, as a worker does, opens the provider and makes a small put and get first, so
imports, the client and its connection pool are in place before anything is measured.
It then says ``ready`` on stdout with its RSS and waits for a line on stdin: the parent
samples this process's RSS from outside while it puts SIZE_BYTES generated chunk by chunk
(never whole) and reads them back, hashing both ways. The last line on stdout is a JSON
object with the timings, the hashes and the kernel's high-water mark of the RSS (VmHWM,
reset just before the measured part), so a peak between two samples is not missed.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from adx_core.settings import Settings
from adx_core.storage import open_storage
from adx_core.storage.provider import StorageProvider

CHUNK = 1024 * 1024  # what a client upload hands put(): far smaller than a part
_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    # Writing 5 resets VmHWM to the current RSS (Linux 4.0+).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Generated:
    """SIZE bytes in CHUNK pieces: one random block, each copy stamped with its index so
    that no two chunks are equal (a swapped or repeated chunk changes the hash)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.digest = hashlib.sha256()
        self._block = os.urandom(CHUNK)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = index = 0
        while sent < self.size:
            length = min(CHUNK, self.size - sent)
            chunk = (index.to_bytes(8, "big") + self._block[8:])[:length]
            self.digest.update(chunk)
            sent += length
            index += 1
            yield chunk


async def _round_trip(store: StorageProvider, key: str, size: int) -> dict[str, object]:
    data = Generated(size)
    cpu = time.process_time()
    began = time.perf_counter()
    info = await store.put(key, data)
    put_seconds = time.perf_counter() - began
    began = time.perf_counter()
    digest = hashlib.sha256()
    got = largest = 0
    async for chunk in store.get(key):
        digest.update(chunk)
        got += len(chunk)
        largest = max(largest, len(chunk))
    get_seconds = time.perf_counter() - began
    return {
        "size": size,
        "put_seconds": put_seconds,
        "get_seconds": get_seconds,
        "sent_sha256": data.digest.hexdigest(),
        "recorded_sha256": info.sha256,
        "got_sha256": digest.hexdigest(),
        "got_bytes": got,
        "largest_chunk": largest,
        "cpu_seconds": time.process_time() - cpu,
    }


async def main(kind: str, size: int) -> None:
    settings = Settings()
    store = open_storage(settings, kind)
    await store.ensure_container()
    run = uuid.uuid4().hex[:12]
    try:
        await _round_trip(store, f"bench/{run}/warm-up", 4096)
        await store.delete(f"bench/{run}/warm-up")
        gc.collect()
        peak_reset = _reset_peak()
        _say(phase="ready", rss_kib=_status_kib("VmRSS"), part_size=settings.storage_part_size)
        await asyncio.to_thread(sys.stdin.readline)
        result = await _round_trip(store, f"bench/{run}/large", size)
        result["hwm_kib"] = _status_kib("VmHWM") if peak_reset else None
        result["rss_end_kib"] = _status_kib("VmRSS")
        await store.delete(f"bench/{run}/large")
    finally:
        await store.close()
    _say(phase="done", **result)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
