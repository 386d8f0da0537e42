"""CPU time and memory of the stack's processes, read with psutil.

CPU is user + system seconds. For PostgreSQL it is the postmaster, its live backends and
the children it has already reaped (backends that exited), so nothing is lost when a pool
closes a connection. RSS is sampled in the background; the peak is the highest sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_SECONDS = 0.25


def cpu_seconds(proc: psutil.Process, with_children: bool = False) -> float:
    times = proc.cpu_times()
    total = times.user + times.system
    if with_children:
        total += times.children_user + times.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
    return total


@dataclass
class Watched:
    name: str
    proc: psutil.Process
    with_children: bool = False
    rss_peak: int = 0
    rss_first: int = 0
    rss_last: int = 0

    def cpu(self) -> float:
        try:
            return cpu_seconds(self.proc, self.with_children)
        except psutil.Error:
            return float("nan")

    def sample_rss(self) -> None:
        with contextlib.suppress(psutil.Error):
            rss = self.proc.memory_info().rss
            self.rss_first = self.rss_first or rss
            self.rss_last = rss
            self.rss_peak = max(self.rss_peak, rss)


@dataclass(frozen=True)
class CpuSpan:
    """CPU seconds each process used between two readings, and the wall time between."""

    wall: float
    cpu: dict[str, float]


@dataclass
class Meter:
    watched: list[Watched] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def watch(self, name: str, pid: int, *, with_children: bool = False) -> None:
        self.watched.append(Watched(name, psutil.Process(pid), with_children))

    def cpu(self) -> dict[str, float]:
        return {w.name: w.cpu() for w in self.watched}

    def start_sampling(self) -> None:
        async def loop() -> None:
            while True:
                for w in self.watched:
                    w.sample_rss()
                await asyncio.sleep(SAMPLE_SECONDS)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop_sampling(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in self.watched:
            w.sample_rss()


class Span:
    """``with Span(meter) as span:`` ... ``span.result`` holds the CPU used inside."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._start_cpu: dict[str, float] = {}
        self._start_wall = 0.0
        self.result = CpuSpan(0.0, {})

    def __enter__(self) -> Span:
        self._start_cpu = self._meter.cpu()
        self._start_wall = _now()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._meter.cpu()
        self.result = CpuSpan(
            wall=_now() - self._start_wall,
            cpu={name: end[name] - self._start_cpu[name] for name in end},
        )


def _now() -> float:
    return time.monotonic()
