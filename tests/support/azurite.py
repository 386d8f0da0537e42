"""Azurite, Microsoft's Azure Blob Storage emulator, from npm, on loopback.

``make`` installs it into ``node_modules`` from the pinned ``package-lock.json`` (``npm ci``).
Data lives in memory only and dies with the process, which is stopped by its own pid.
Azurite checks Shared Key signatures like Azure does, so a wrong key is refused.
"""

from __future__ import annotations

import time
from pathlib import Path

from adx_cli.devstack.net import is_tcp_open
from tests.support.loopback import LoopbackServer

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"

# Azurite's development account, published in its documentation: not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class Azurite(LoopbackServer):
    @property
    def account_url(self) -> str:
        # Path-style: the account is the first path segment, as on Azurite's own endpoints.
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    def connection_string(self, account_key: str = ACCOUNT_KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={account_key};BlobEndpoint={self.account_url};"
        )

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "ADX_AZURE_CONTAINER": bucket,
            "ADX_AZURE_CONNECTION_STRING": self.connection_string(),
        }

    def start(self, timeout: float = 30.0) -> None:
        if not AZURITE_BLOB.exists():
            raise RuntimeError(
                f"Azurite is not installed ({AZURITE_BLOB} is missing): run make, which runs npm ci"
            )
        process = self._spawn(
            [
                str(AZURITE_BLOB),
                "--blobHost",
                self.host,
                "--blobPort",
                str(self.port),
                "--inMemoryPersistence",
                # The SDK speaks a newer service version than Azurite knows; the calls we make
                # are all older than that version.
                "--skipApiVersionCheck",
                # Telemetry would try to reach the internet, which this machine cannot.
                "--disableTelemetry",
                # No --location: Azurite refuses it together with --inMemoryPersistence.
                "--silent",
            ],
            # Anything Azurite would write beside it stays in the workdir (its cwd).
            "azurite.log",
        )
        deadline = time.monotonic() + timeout
        while not is_tcp_open(self.host, self.port):
            if process.poll() is not None:
                code = process.returncode
                self._process = None
                raise RuntimeError(
                    f"azurite-blob exited with {code}; see {self._workdir / 'azurite.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("azurite-blob did not start listening in time")
            time.sleep(0.05)
