"""Low-level helpers shared by the dev-stack runners: spawning children that die with
us, stopping them with an escalating signal, and reading the tail of their logs."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved once in the parent: loading a shared library between fork and exec could
    # deadlock on the dynamic loader's lock if another thread held it at fork time.
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()


def parent_death_signal_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child receive ``sig`` when its parent dies.

    Linux only; elsewhere it returns None and children can outlive a SIGKILLed parent.
    The kernel tracks the *thread* that forked, so spawn from a long-lived thread (the
    main thread or the event loop's), not from a short-lived worker thread.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent_pid = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal would ever come.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), int(sig))

    return set_parent_death_signal


def stop_process(
    proc: subprocess.Popen[bytes],
    sig: signal.Signals,
    timeout: float,
    *,
    whole_group: bool = False,
) -> int:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code.

    ``whole_group`` signals the child's process group (it must lead its own group), so
    that grandchildren a script or reloader started go down with it.
    """
    if proc.poll() is not None:
        return proc.returncode
    _send(proc.pid, sig, whole_group)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _send(proc.pid, signal.SIGKILL, whole_group)
        return proc.wait()


def _send(pid: int, sig: signal.Signals, whole_group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if whole_group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def read_log_tail(path: Path, start_offset: int = 0, max_lines: int = 40) -> str:
    """The last ``max_lines`` lines written to ``path`` after ``start_offset``, for error
    messages; a missing or unreadable log gives a short note instead of an exception."""
    try:
        with path.open("rb") as log:
            log.seek(start_offset)
            text = log.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    lines = text.splitlines()[-max_lines:]
    return "\n".join(lines) if lines else f"(log {path} is empty)"


def log_size(path: Path) -> int:
    """Current size of ``path`` (0 if absent): where this run's output will start."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
