"""A server process we start and own, the common part of PostgreSQL and Temporal.

It runs in its own process group (a terminal Ctrl-C reaches only us, and we stop it in
order), with a parent-death signal (if we are killed, it stops too), and its output is
appended to a log file whose new part is quoted when it fails to start.
"""

from __future__ import annotations

import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from .process import log_size, parent_death_signal_preexec, read_log_tail, stop_process


class ChildServer(ABC):
    #: How the server is asked to stop; a subclass picks its server's graceful signal.
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @abstractmethod
    def start(self, timeout: float = 30) -> None:
        """Start the server and return once it answers."""

    def stop(self, timeout: float = 15) -> None:
        """``stop_signal``, then SIGKILL after ``timeout``. Safe to call twice."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                stop_process(proc, self.stop_signal, timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _launch(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        user: int | None = None,
        group: int | None = None,
        extra_groups: list[int] | None = None,
    ) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = log_size(self.log_path)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            process_group=0,
            preexec_fn=parent_death_signal_preexec(self.stop_signal),
            user=user,
            group=group,
            extra_groups=extra_groups,
        )

    def _exited(self) -> bool:
        return self._proc is None or self._proc.poll() is not None

    def _log_tail(self) -> str:
        """What the server logged since this start."""
        return read_log_tail(self.log_path, self._log_offset)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
