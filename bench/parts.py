"""What the API and operator benchmarks share: running one part under a CPU span, the
report of a part that failed (with the last errors of the processes' logs), and the
per-part CPU table."""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from bench import stack
from bench.procstat import CpuSpan, Meter, Span


class Notes(Protocol):
    notes: list[str]


class PartResults(Notes, Protocol):
    load: dict[str, float]
    seconds: dict[str, float]
    cpu: dict[str, CpuSpan]


async def run_part(
    results: PartResults,
    meter: Meter,
    logs: Sequence[stack.Child],
    label: str,
    name: str,
    run: Callable[[], Awaitable[None]],
) -> bool:
    """Run one part; a failure is reported and the next part still runs."""
    print(f"{label}: {name}", flush=True)
    results.load[name] = os.getloadavg()[0]
    began = time.monotonic()
    span = Span(meter)
    try:
        with span:
            await run()
    except Exception as exc:  # reported; the next part still runs
        failed(results, name, exc, logs)
        return False
    finally:
        results.seconds[name] = time.monotonic() - began
        results.cpu[name] = span.result
    return True


ERROR_MARKS = ('"level": "error"', "Traceback")


def failed(
    results: Notes,
    name: str,
    exc: BaseException,
    logs: Sequence[stack.Child],
    marks: Sequence[str] = ERROR_MARKS,
) -> None:
    what = "".join(traceback.format_exception_only(exc)).strip()
    print(f"  {name} failed: {what}", file=sys.stderr, flush=True)
    results.notes.append(f"**{name} failed**: {what}")
    for child in logs:
        errors = [line for line in child.tail(200).splitlines() if any(m in line for m in marks)]
        if errors:
            results.notes.append(
                f"Last errors in the {child.name} log: " + " | ".join(e[:300] for e in errors[-3:])
            )
            print(f"  {child.name}: {errors[-1][:600]}", file=sys.stderr, flush=True)


def cpu_rows(cpu: Mapping[str, CpuSpan], processes: Sequence[str]) -> list[list[str]]:
    """One row per part of at least a second: wall time, and each process's CPU seconds
    with the share of one core."""
    rows = []
    for name, span in cpu.items():
        if span.wall < 1:
            continue
        cells = []
        for process in processes:
            seconds = span.cpu.get(process, math.nan)
            cells.append(
                "—" if math.isnan(seconds) else f"{seconds:.1f} ({seconds / span.wall:.0%})"
            )
        rows.append([name, f"{span.wall:.1f}", *cells])
    return rows
