"""The real operator (``adx_operator.runner.serve``, as ``adx operator`` runs it) in a
thread with its own event loop, against the Kubernetes API emulator on loopback, the real
Temporal dev server, PostgreSQL and the workers.

The emulator serves from the test's event loop, so a test waits for the operator with
``await`` (never a blocking sleep), and stops it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adx_core.settings import Settings
from adx_operator.runner import RunOptions, serve
from tests.support.kube import KubeHandle, serve_kubernetes

TENANTS = "adx.dev/v1alpha1/tenants"
MIGRATIONS = "adx.dev/v1alpha1/storagemigrations"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OperatorThread:
    """One operator replica: start, probe, stop (cleanly, as on SIGTERM)."""

    def __init__(self, settings: Settings, priority: int | None = None) -> None:
        self.settings = settings
        self.port = free_port()
        self._priority = priority
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"operator-{self.port}", daemon=True)

    def start(self) -> OperatorThread:
        self._thread.start()
        self._started.wait(10)
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await serve(
                self.settings, self._stop, RunOptions(priority=self._priority, http_port=self.port)
            )

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 30) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the operator did not stop"

    async def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}{path}") as response,
        ):
            return response.status, await response.json()

    async def ready(self, within: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                status, _ = await self.probe("/readyz")
                if status == 200:
                    return
            except aiohttp.ClientError:
                pass
            assert self.error is None, self.error
            assert asyncio.get_running_loop().time() < deadline, "the operator never got ready"
            await asyncio.sleep(0.1)


@pytest.fixture
async def kube() -> AsyncIterator[KubeHandle]:
    async with serve_kubernetes() as handle:
        yield handle


@pytest.fixture
def operator_settings(
    settings: Settings, kube: KubeHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    # kopf logs in with the current kubeconfig, as `adx operator` does outside a cluster.
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    return settings.model_copy(
        update={
            "operator_poll_seconds": 0.2,
            "operator_resync_seconds": 2.0,
            "operator_peering": "",
        }
    )


OperatorFactory = Callable[..., OperatorThread]


@pytest.fixture
async def operators(operator_settings: Settings) -> AsyncIterator[OperatorFactory]:
    """Start operators (``priority``, ``peering`` name); all are stopped at the end."""
    started: list[OperatorThread] = []

    def start(priority: int | None = None, peering: str = "") -> OperatorThread:
        settings = operator_settings.model_copy(update={"operator_peering": peering})
        thread = OperatorThread(settings, priority).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        await asyncio.to_thread(thread.stop)


def tenant_manifest(
    name: str | None = None, namespace: str = "default", **spec: Any
) -> dict[str, Any]:
    name = name or f"t{uuid.uuid4().hex[:10]}"
    return {
        "apiVersion": "adx.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "displayName": f"Tenant {name}",
            "plan": "free",
            "admin": {"email": f"ada@{name}.example", "name": "Ada"},
            **spec,
        },
    }


async def wait_for(
    kube: KubeHandle,
    resource: str,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any] | None], bool],
    within: float = 60,
    what: str = "",
) -> dict[str, Any] | None:
    """Poll the emulator until ``check(object)`` holds; the object (None once gone)."""
    deadline = asyncio.get_running_loop().time() + within
    last: dict[str, Any] | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await kube.get(resource, namespace, name)
        if check(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or name}: last seen {last!r}")


def phase(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("status") or {}).get("phase")


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c.get("reason", ""))
        for c in (obj.get("status") or {}).get("conditions", [])
    }
