"""A real Redis server (Debian's redis-server) on loopback, for cache tests.

No persistence (``--save ""``, ``--appendonly no``): the data lives and dies with the test
session. It is stopped by its own pid.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from adx_cli.devstack.net import free_port, is_tcp_open

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which(REDIS_SERVER) is not None

    def start(self, timeout: float = 10.0) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        log = (self._workdir / "redis.log").open("ab")
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
                "--protected-mode",
                "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not is_tcp_open(self.host, self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start listening in time")
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
