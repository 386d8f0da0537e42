"""Latency samples and their summaries (nearest-rank percentiles, in milliseconds)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Summary:
    name: str
    count: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


@dataclass
class Series:
    """The latencies (seconds) of one kind of request, and what went wrong."""

    name: str
    seconds: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, elapsed: float) -> None:
        self.seconds.append(elapsed)

    def fail(self, reason: str) -> None:
        self.errors[reason] += 1

    def summary(self) -> Summary:
        ms = sorted(s * 1000 for s in self.seconds)
        return Summary(
            name=self.name,
            count=len(ms),
            errors=sum(self.errors.values()),
            p50_ms=percentile(ms, 50),
            p90_ms=percentile(ms, 90),
            p99_ms=percentile(ms, 99),
            max_ms=ms[-1] if ms else math.nan,
            mean_ms=sum(ms) / len(ms) if ms else math.nan,
        )


def ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0 or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator
