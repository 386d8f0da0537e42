"""gcp-storage-emulator (PyPI) on loopback, for the GCS provider.

It keeps everything in memory (``--in-memory``), so the data lives and dies with the
process. It checks no credentials: the provider talks to it anonymously. It is stopped by
its own pid.
"""

from __future__ import annotations

import sys
from pathlib import Path

from adx_cli.devstack.net import wait_for_http
from tests.support.loopback import LoopbackServer

EMULATOR = Path(sys.executable).parent / "gcp-storage-emulator"
PROJECT = "adx-test"


class GcsEmulator(LoopbackServer):
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        # --quiet: at its default level it logs every request it serves.
        command = [str(EMULATOR), "start", "--host", self.host, "--port", str(self.port)]
        self._spawn([*command, "--in-memory", "--quiet"], f"gcs-{self.port}.log")
        try:
            wait_for_http(f"{self.url}/", timeout, alive=self._alive)  # its health check
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "ADX_GCS_ENDPOINT": self.url,
            "ADX_GCS_PROJECT": PROJECT,
            "ADX_GCS_BUCKET": bucket,
        }
