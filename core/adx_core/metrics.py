"""Prometheus metrics: ours through prometheus-client, and the Temporal SDK's own.

The SDK's core runtime records into a ``MetricBuffer``. ``TemporalMetricsCollector`` drains
it into plain in-memory series and exposes them on the same ``/metrics`` as everything else,
so a process serves one scrape target rather than two.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")

HTTP_REQUESTS = Counter(
    "adx_http_requests_total", "HTTP requests answered", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "adx_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "route", "method"],
    buckets=_BUCKETS,
)
WORKFLOWS_STARTED = Counter(
    "adx_workflows_started_total", "Workflows started through the API", ["workflow_type"]
)

LabelKey = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS) + 1))
    total: float = 0.0


@dataclass
class _Series:
    kind: int
    help: str
    values: dict[LabelKey, float] = field(default_factory=dict)
    histograms: dict[LabelKey, _Histogram] = field(default_factory=dict)


class TemporalMetricsCollector(Collector):
    def __init__(self, buffer: MetricBuffer) -> None:
        self._buffer = buffer
        self._series: dict[str, _Series] = {}
        self._lock = threading.Lock()

    def drain(self) -> None:
        """Move buffered updates into the series. Call it often: a full buffer drops updates."""
        with self._lock:
            for update in self._buffer.retrieve_updates():
                metric = update.metric
                # The SDK's names mostly carry the prefix already (temporal_request).
                raw = _INVALID.sub("_", metric.name)
                name = raw if raw.startswith("temporal_") else f"temporal_{raw}"
                series = self._series.get(name)
                if series is None:
                    series = _Series(metric.kind, metric.description or metric.name)
                    self._series[name] = series
                labels = _label_key(update.attributes)
                if series.kind == BUFFERED_METRIC_KIND_COUNTER:
                    series.values[labels] = series.values.get(labels, 0.0) + update.value
                elif series.kind == BUFFERED_METRIC_KIND_GAUGE:
                    series.values[labels] = float(update.value)
                else:
                    hist = series.histograms.setdefault(labels, _Histogram())
                    hist.counts[bisect.bisect_left(_BUCKETS, update.value)] += 1
                    hist.total += update.value

    def collect(self) -> Iterable[Metric]:
        self.drain()
        with self._lock:
            for name, series in self._series.items():
                yield _family(name, series)


def _label_key(attributes: Mapping[str, str | int | float | bool]) -> LabelKey:
    return tuple(sorted((_INVALID.sub("_", k), str(v)) for k, v in attributes.items()))


def _family(name: str, series: _Series) -> Metric:
    label_names = sorted({k for key in (*series.values, *series.histograms) for k, _ in key})

    def values_of(key: LabelKey) -> list[str]:
        as_dict = dict(key)
        return [as_dict.get(label, "") for label in label_names]

    if series.kind == BUFFERED_METRIC_KIND_COUNTER:
        counter = CounterMetricFamily(name, series.help, labels=label_names)
        for key, value in series.values.items():
            counter.add_metric(values_of(key), value)
        return counter
    if series.kind == BUFFERED_METRIC_KIND_GAUGE:
        gauge = GaugeMetricFamily(name, series.help, labels=label_names)
        for key, value in series.values.items():
            gauge.add_metric(values_of(key), value)
        return gauge
    histogram = HistogramMetricFamily(name, series.help, labels=label_names)
    for key, hist in series.histograms.items():
        cumulative, buckets = 0, []
        for bound, count in zip((*_BUCKETS, float("inf")), hist.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), float(cumulative)))
        histogram.add_metric(values_of(key), buckets, hist.total)
    return histogram


_runtime: Runtime | None = None


def temporal_runtime() -> Runtime:
    """The process's Temporal runtime, its SDK metrics exposed in the default registry.

    One per process: a runtime owns threads and the metric buffer, and a collector may be
    registered only once.
    """
    global _runtime
    if _runtime is None:
        buffer = MetricBuffer(100_000, MetricBufferDurationFormat.SECONDS)
        _runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
        REGISTRY.register(TemporalMetricsCollector(buffer))
    return _runtime
