"""A test server run as a child process on a free loopback port, logging to its workdir
and stopped by its own pid."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from adx_cli.devstack.net import free_port


class LoopbackServer:
    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the benchmarks measure its CPU)."""
        return self._process.pid if self._process is not None else None

    def _spawn(
        self, argv: Sequence[str], log_name: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self._workdir.mkdir(parents=True, exist_ok=True)
        with (self._workdir / log_name).open("ab") as log:
            self._process = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=self._workdir, env=env
            )
        return self._process

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
