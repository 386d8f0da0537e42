"""The one way every ADX process connects to Temporal.

It applies the namespace and TLS or API key from settings, the AES-GCM codec (headers
included, so the caller's identity is encrypted in history too) and the interceptors for
context propagation and tracing. Workers built from this client inherit all of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig, TLSConfig

from adx_core.settings import Settings
from adx_core.temporal.codec import EncryptionCodec
from adx_core.temporal.interceptor import ContextInterceptor


def data_converter(settings: Settings) -> DataConverter:
    if not settings.codec_keys or settings.codec_active_key_id is None:
        return DataConverter.default
    codec = EncryptionCodec(settings.codec_keys, settings.codec_active_key_id)
    # Failure messages and stack traces go into the encrypted part too: they quote inputs
    # (a slug, the SQL and parameters of a failed statement) that history must not show.
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def interceptors() -> list[Interceptor]:
    return [ContextInterceptor(), TracingInterceptor()]


def tls_config(settings: Settings) -> TLSConfig | bool:
    if not (settings.temporal_tls_cert or settings.temporal_tls_ca):
        # An API key implies TLS (Temporal Cloud); the SDK turns it on for us.
        return False
    return TLSConfig(
        server_root_ca_cert=settings.temporal_tls_ca.read_bytes()
        if settings.temporal_tls_ca
        else None,
        client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
        client_private_key=settings.temporal_tls_key.read_bytes()
        if settings.temporal_tls_key
        else None,
        domain=settings.temporal_tls_server_name,
    )


async def connect(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    extra_interceptors: Sequence[Interceptor] = (),
    identity: str | None = None,
    retry_config: RetryConfig | None = None,
) -> Client:
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls_config(settings) if api_key is None else (tls_config(settings) or True),
        data_converter=data_converter(settings),
        interceptors=[*interceptors(), *extra_interceptors],
        header_codec_behavior=HeaderCodecBehavior.CODEC,
        runtime=runtime,
        identity=identity,
        retry_config=retry_config,
    )
