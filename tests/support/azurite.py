"""Azurite, Microsoft's Azure Blob Storage emulator, from npm, on loopback.

``make`` installs it into ``node_modules`` from the pinned ``package-lock.json`` (``npm ci``).
Data lives in memory only and dies with the process, which is stopped by its own pid.
Azurite checks Shared Key signatures like Azure does, so a wrong key is refused.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from adx_cli.devstack.net import free_port, is_tcp_open

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"

# Azurite's development account, published in its documentation: not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class Azurite:
    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def account_url(self) -> str:
        # Path-style: the account is the first path segment, as on Azurite's own endpoints.
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    def connection_string(self, account_key: str = ACCOUNT_KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={account_key};BlobEndpoint={self.account_url};"
        )

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the benchmarks measure its CPU)."""
        return self._process.pid if self._process is not None else None

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
        self._workdir.mkdir(parents=True, exist_ok=True)
        log = (self._workdir / "azurite.log").open("ab")
        self._process = subprocess.Popen(
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
            stdout=log,
            stderr=subprocess.STDOUT,
            # Anything Azurite would write beside it stays in the workdir.
            cwd=self._workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not is_tcp_open(self.host, self.port):
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(
                    f"azurite-blob exited with {code}; see {self._workdir / 'azurite.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("azurite-blob did not start listening in time")
            time.sleep(0.05)

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
