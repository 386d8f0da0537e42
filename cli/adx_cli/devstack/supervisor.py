"""Run the processes of ``adx dev`` side by side, like a tiny foreman.

Usage from a click command::

    supervisor = Supervisor()
    supervisor.add("api", [sys.executable, "-m", "adx_api"], env={"PORT": "8080"},
                   ready=lambda: is_http_ready("http://127.0.0.1:8080/readyz"))
    supervisor.add("worker", [sys.executable, "-m", "adx_workers", "tenants"])
    raise SystemExit(supervisor.run_sync())

Children start in the order they were added; a child with ``ready`` must be ready
before the next one starts. Their output is streamed line by line, prefixed with their
name. Ctrl-C or SIGTERM stops them all in reverse order (SIGTERM to the child's process
group, SIGKILL after ``stop_timeout``) and ``run`` returns 0. When a child exits on its
own, or is not ready in time, the others are stopped the same way and ``run`` returns
non-zero: the child's exit code, or 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from .process import parent_death_signal_preexec

_READY_POLL_INTERVAL = 0.2
_CHUNK = 65536
_SUPERVISOR_NAME = "adx"


@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None
    ready: Callable[[], bool] | None
    ready_timeout: float
    proc: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None
    exited: asyncio.Task[int] | None = None


class ChildFailed(Exception):
    """A child exited, failed to start or was not ready in time: stop everything."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Supervisor:
    """Starts, watches and stops a fixed list of child processes. Use it once."""

    def __init__(
        self,
        out: TextIO | None = None,
        stop_timeout: float = 10,
        ready_timeout: float = 60,
        handle_signals: bool = True,
    ) -> None:
        self._out = out or sys.stdout
        self.stop_timeout = stop_timeout
        self.ready_timeout = ready_timeout
        self.handle_signals = handle_signals
        self._children: list[_Child] = []
        # Events bind to a loop on first use, not at creation (Python 3.10+).
        self._stop_requested = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._width = len(_SUPERVISOR_NAME)

    def add(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
        *,
        ready_timeout: float | None = None,
    ) -> None:
        """Register a child. ``env`` is added to (and overrides) our own environment.

        ``ready`` is a quick, blocking probe (it runs in a thread), polled until it
        returns True; the next child starts only then.
        """
        if any(child.name == name for child in self._children):
            raise ValueError(f"a child named {name!r} was already added")
        self._children.append(
            _Child(
                name=name,
                argv=list(argv),
                env=dict(env) if env is not None else None,
                ready=ready,
                ready_timeout=ready_timeout if ready_timeout is not None else self.ready_timeout,
            )
        )

    @property
    def pids(self) -> dict[str, int]:
        """The pids of the children started so far, by name."""
        return {c.name: c.proc.pid for c in self._children if c.proc is not None}

    def request_stop(self) -> None:
        """Ask ``run`` to stop everything and return 0. Callable from any thread."""
        if self._loop is None:
            self._stop_requested.set()
        else:
            self._loop.call_soon_threadsafe(self._stop_requested.set)

    def run_sync(self) -> int:
        """``run`` in a fresh event loop, for click commands."""
        return asyncio.run(self.run())

    async def run(self) -> int:
        """Start every child, wait for a stop request or a failure, stop them all."""
        self._loop = asyncio.get_running_loop()
        width = max((len(c.name) for c in self._children), default=0)
        self._width = max(width, len(_SUPERVISOR_NAME))
        installed = self._install_signal_handlers()
        try:
            for child in self._children:
                if self._stop_requested.is_set():
                    break
                await self._start(child)
            await self._watch()
            return 0
        except ChildFailed as failure:
            self._say(f"{failure}; stopping the others")
            return failure.exit_code
        finally:
            # Also when we are cancelled (KeyboardInterrupt without our handlers).
            await self._stop_all()
            self._remove_signal_handlers(installed)

    # -- starting and watching --------------------------------------------------------

    async def _start(self, child: _Child) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(child.env or {})}
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *child.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                # Its own process group: a terminal Ctrl-C reaches only us, we stop the
                # children in order, and a group signal also reaches their own children.
                process_group=0,
                preexec_fn=parent_death_signal_preexec(signal.SIGTERM),
            )
        except OSError as exc:
            raise ChildFailed(f"{child.name} could not start: {exc}", 1) from exc
        command = shlex.join(child.argv).replace("\n", "\\n")
        self._say(f"started {child.name} (pid {child.proc.pid}): {command}")
        child.pump = asyncio.create_task(self._pump(child.name, child.proc))
        exited = child.exited = asyncio.create_task(child.proc.wait())
        if child.ready is not None:
            await self._wait_ready(child, child.ready, exited)

    async def _wait_ready(
        self, child: _Child, ready: Callable[[], bool], exited: asyncio.Task[int]
    ) -> None:
        deadline = asyncio.get_running_loop().time() + child.ready_timeout
        while not await asyncio.to_thread(ready):
            if exited.done():
                raise _exited(child.name, exited)
            if self._stop_requested.is_set():
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise ChildFailed(f"{child.name} was not ready after {child.ready_timeout:g}s", 1)
            await asyncio.sleep(_READY_POLL_INTERVAL)
        self._say(f"{child.name} is ready")

    async def _watch(self) -> None:
        stop = asyncio.create_task(self._stop_requested.wait())
        exits = {c.exited: c for c in self._children if c.exited is not None}
        try:
            done, _ = await asyncio.wait([stop, *exits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if stop in done:
            self._say("stopping")
            return
        first = next(task for task in exits if task in done)
        raise _exited(exits[first].name, first)

    # -- stopping -----------------------------------------------------------------------

    async def _stop_all(self) -> None:
        for child in reversed(self._children):
            await self._stop(child)
        pumps = [c.pump for c in self._children if c.pump is not None]
        if pumps:
            # Grandchildren that kept the pipe open must not keep us waiting forever.
            await asyncio.wait(pumps, timeout=self.stop_timeout)

    async def _stop(self, child: _Child) -> None:
        if child.proc is None or child.exited is None:
            return
        if not child.exited.done():
            _signal_group(child.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(child.exited), self.stop_timeout)
            except TimeoutError:
                self._say(f"{child.name} ignored SIGTERM for {self.stop_timeout:g}s; killing it")
                _signal_group(child.proc.pid, signal.SIGKILL)
                await child.exited
            self._say(f"{child.name} stopped")
        # Whatever the child left behind in its group goes too.
        _signal_group(child.proc.pid, signal.SIGKILL)

    # -- output ---------------------------------------------------------------------------

    async def _pump(self, name: str, proc: asyncio.subprocess.Process) -> None:
        if proc.stdout is None:  # never: we always ask for a pipe
            return
        pending = b""
        while chunk := await proc.stdout.read(_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._emit(name, line)
        if pending:
            self._emit(name, pending)

    def _emit(self, name: str, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        self._out.write(f"{name:<{self._width}} | {text}\n")
        self._out.flush()

    def _say(self, message: str) -> None:
        self._emit(_SUPERVISOR_NAME, message.encode())

    # -- signals --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> list[signal.Signals]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            # NotImplementedError: loops without signal support (Windows); RuntimeError:
            # no loop signal handling here. Ctrl-C then arrives as KeyboardInterrupt.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
        return installed

    def _remove_signal_handlers(self, installed: list[signal.Signals]) -> None:
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)


def _exited(name: str, exited: asyncio.Task[int]) -> ChildFailed:
    code = _as_exit_code(exited.result())
    return ChildFailed(f"{name} exited with code {code}", code or 1)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _as_exit_code(returncode: int) -> int:
    # asyncio reports death by signal N as -N; shells report it as 128 + N.
    return 128 - returncode if returncode < 0 else returncode
