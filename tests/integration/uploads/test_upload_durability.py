"""An upload is durable from the 202 on: the worker that runs it can die, and another
finishes it with the bytes the API acknowledged."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from temporalio.client import Client

from adx_cli.devstack.net import free_port, is_http_ready
from adx_core.settings import Settings
from tests.integration.uploads.conftest import Api, finished, held_at_the_scan
from tests.support.processes import start_worker
from tests.support.tenancy import SeededTenant


async def _ready(port: int) -> None:
    for _ in range(300):
        if await asyncio.to_thread(is_http_ready, f"http://127.0.0.1:{port}/readyz"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the worker did not become ready")


async def test_a_sigkilled_worker_loses_no_acknowledged_upload(
    api: Api,
    settings: Settings,
    tenant: SeededTenant,
    temporal_client: Client,
    clamd_factory: Any,
    tmp_path: Path,
) -> None:
    clamd = clamd_factory()
    configured = settings.model_copy(update={"clamd_address": clamd.address})
    alice = tenant.auth(settings, "alice")
    data = os.urandom(3 * 1024 * 1024)
    first_port, second_port = free_port(), free_port()
    first = start_worker(configured, "files", first_port, tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        await _ready(first_port)
        # The upload waits at the scan, retrying, while the worker is killed.
        operation_id = await held_at_the_scan(
            api,
            temporal_client,
            alice,
            clamd,
            data,
            name="kept.bin",
            content_type="application/octet-stream",
        )
        first.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
        clamd.start()
        second = start_worker(configured, "files", second_port, tmp_path / "worker-2.log")
        await _ready(second_port)
        done = await finished(api, alice, operation_id)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 30)
    assert done["status"] == "succeeded", done
    assert done["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    content = await api.get(f"/v1/files/{done['result']['file_id']}/content", headers=alice)
    assert await content.read() == data
