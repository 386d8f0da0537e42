"""``adx operator`` as a Deployment runs it: a process of its own with the environment's
settings and a kubeconfig, ready on /readyz, reconciling, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from adx_core.settings import Settings
from tests.operator.conftest import TENANTS, free_port, phase, tenant_manifest, wait_for
from tests.support.kube import KubeHandle
from tests.support.processes import settings_env


async def readyz(port: int) -> int:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/readyz") as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return 0


async def test_adx_operator_runs_reconciles_and_stops_on_sigterm(
    kube: KubeHandle, settings: Settings, tenants_worker: object, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **settings_env(settings),
        "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        "ADX_OPERATOR_HTTP_PORT": str(port),
        "ADX_OPERATOR_PEERING": "",
        "ADX_OPERATOR_POLL_SECONDS": "0.3",
    }
    log = (tmp_path / "operator.log").open("w")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adx_cli", "operator", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(300):
            if await readyz(port) == 200:
                break
            assert process.returncode is None, (tmp_path / "operator.log").read_text()
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("adx operator never got ready")
        created = await kube.apply(tenant_manifest())
        await wait_for(
            kube, TENANTS, "default", created["metadata"]["name"], lambda o: phase(o) == "Ready"
        )
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        assert code == 0, (tmp_path / "operator.log").read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    assert "operator stopped" in (tmp_path / "operator.log").read_text()


def test_bad_operator_settings_are_refused_at_start(settings: Settings, tmp_path: Path) -> None:
    env = {**settings_env(settings), "ADX_OPERATOR_PEERING": "Not A Name!"}
    result = subprocess.run(
        [sys.executable, "-m", "adx_cli", "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ADX_OPERATOR_PEERING" in result.stderr
