"""RSS and CPU of the stack's processes around one measured part of the upload benchmarks.

RSS is sampled with psutil every SAMPLE_SECONDS, and the kernel's high-water mark
(``VmHWM`` in /proc/PID/status) is reset just before the part (writing 5 to
/proc/PID/clear_refs, which needs the process to be ours) and read just after, so a peak
between two samples is not missed. CPU is user + system seconds over the part.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from types import TracebackType

import psutil

from bench.procstat import cpu_seconds
from bench.uploads_results import Rss

SAMPLE_SECONDS = 0.1


def _reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


class PartMeter:
    """``async with PartMeter(rss_of, cpu_of) as meter:`` ... then ``meter.rss`` (for the
    processes in ``rss_of``) and ``meter.cpu`` (for those in ``cpu_of``; a name ending in
    ``+`` counts the process's children too, as PostgreSQL's backends)."""

    def __init__(self, rss_of: dict[str, int], cpu_of: dict[str, int]) -> None:
        self._rss_of = {name: psutil.Process(pid) for name, pid in rss_of.items()}
        self._cpu_of = {name: psutil.Process(pid) for name, pid in cpu_of.items()}
        self._hwm_reset: dict[str, bool] = {}
        self._cpu_before: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.rss: dict[str, Rss] = {}
        self.cpu: dict[str, float] = {}

    def _cpu_now(self) -> dict[str, float]:
        now = {}
        for name, proc in self._cpu_of.items():
            try:
                now[name.rstrip("+")] = cpu_seconds(proc, with_children=name.endswith("+"))
            except psutil.Error:
                now[name.rstrip("+")] = math.nan
        return now

    async def __aenter__(self) -> PartMeter:
        for name, proc in self._rss_of.items():
            self._hwm_reset[name] = _reset_hwm(proc.pid)
            rss = _rss(proc)
            self.rss[name] = Rss(baseline=rss, sampled_peak=rss)
        self._cpu_before = self._cpu_now()
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            for name, proc in self._rss_of.items():
                entry = self.rss[name]
                entry.sampled_peak = max(entry.sampled_peak, _rss(proc))
            await asyncio.sleep(SAMPLE_SECONDS)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        after = self._cpu_now()
        self.cpu = {name: after[name] - self._cpu_before[name] for name in after}
        for name, proc in self._rss_of.items():
            entry = self.rss[name]
            entry.sampled_peak = max(entry.sampled_peak, _rss(proc))
            if self._hwm_reset[name]:
                entry.hwm = _hwm(proc.pid)
