"""A time cap for pure-Python parsing of hostile input (pypdf) inside a worker thread.

A thread cannot be killed, and signals only reach the main thread. A profile hook can
stop it: ``sys.setprofile`` applies to the calling thread only, runs on every Python
and C function call, and an exception it raises surfaces in the code being profiled.
The exception is a BaseException so that a library's ``except Exception`` recovery
cannot swallow it and carry on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class WorkLimitExceeded(BaseException):
    """The capped work ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise WorkLimitExceeded inside the block once ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    previous = sys.getprofile()

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if time.monotonic() > deadline:
            raise WorkLimitExceeded

    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)
