"""OpenTelemetry tracing. Spans are exported over OTLP when an endpoint is configured.

Without an endpoint the provider still exists, so trace ids are generated and the Temporal
tracing interceptor links API requests, workflows and activities into one trace.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from adx_core.settings import Settings

_provider: TracerProvider | None = None


def configure_tracing(settings: Settings, role: str) -> TracerProvider:
    global _provider
    if _provider is not None:
        return _provider
    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.namespace": "adx",
            "service.instance.role": role,
            "deployment.environment": settings.env.value,
        }
    )
    provider = TracerProvider(resource=resource)
    if settings.otlp_endpoint:
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def flush_tracing(timeout_millis: int = 5000) -> bool:
    """Export every finished span now (tests; a process about to exit)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def shutdown_tracing() -> None:
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
