"""gcp-storage-emulator (PyPI) on loopback, for the GCS provider.

It keeps everything in memory (``--in-memory``), so the data lives and dies with the
process. It checks no credentials: the provider talks to it anonymously. It is stopped by
its own pid.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from adx_cli.devstack.net import free_port, wait_for_http

EMULATOR = Path(sys.executable).parent / "gcp-storage-emulator"
PROJECT = "adx-test"


class GcsEmulator:
    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        log = (self._workdir / f"gcs-{self.port}.log").open("ab")
        # --quiet: at its default level it logs every request it serves.
        command = [str(EMULATOR), "start", "--host", self.host, "--port", str(self.port)]
        self._process = subprocess.Popen(
            [*command, "--in-memory", "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self._workdir,
        )
        log.close()
        try:
            wait_for_http(f"{self.url}/", timeout, alive=self._alive)  # its health check
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the benchmarks measure its CPU)."""
        return self._process.pid if self._process is not None else None

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "ADX_GCS_ENDPOINT": self.url,
            "ADX_GCS_PROJECT": PROJECT,
            "ADX_GCS_BUCKET": bucket,
        }
