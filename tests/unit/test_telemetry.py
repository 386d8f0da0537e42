"""Tracing is configured once per process and exports over OTLP when an endpoint is set."""

from __future__ import annotations

from opentelemetry import trace

from adx_core import telemetry
from adx_core.settings import Settings
from tests.support.otlp import TraceReceiver


def test_spans_reach_the_configured_otlp_endpoint(traces: TraceReceiver) -> None:
    provider = telemetry.configure_tracing(Settings(), "again")
    assert provider.resource.attributes["service.name"] == "adx-test"  # the first one stays
    assert provider.resource.attributes["service.instance.role"] == "tests"
    with trace.get_tracer("test").start_as_current_span("probe"):
        pass
    assert telemetry.flush_tracing()
    assert ("adx-test", "probe") in [(service, name) for service, name, _ in traces.spans()]
