"""Run ADX roles as real processes, configured from a test's settings."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from adx_core.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``ADX_*`` environment that reproduces ``settings`` in another process."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ADX_")}
    codec = ",".join(
        f"{kid}:{base64.b64encode(key).decode()}" for kid, key in settings.codec_keys.items()
    )
    values: dict[str, str | None] = {
        "ADX_ENV": settings.env.value,
        "ADX_DATABASE_URL": settings.database_url.get_secret_value(),
        "ADX_TEMPORAL_ADDRESS": settings.temporal_address,
        "ADX_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "ADX_TASK_QUEUE_PREFIX": settings.task_queue_prefix,
        "ADX_CODEC_KEYS": codec or None,
        "ADX_CODEC_ACTIVE_KEY_ID": settings.codec_active_key_id,
        "ADX_JWT_SECRET": settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        "ADX_STORAGE_ROOT": str(settings.storage_root),
        "ADX_LOG_FORMAT": "json",
        "ADX_SMTP_HOST": settings.smtp_host,
        "ADX_SMTP_PORT": str(settings.smtp_port),
        "ADX_PAYMENT_PROVIDER": settings.payment_provider.value,
        "ADX_REDIS_URL": settings.redis_url.get_secret_value() if settings.redis_url else None,
        "ADX_SCANNER": settings.scanner.value,
        "ADX_CLAMD_ADDRESS": settings.clamd_address,
        "ADX_SCAN_MAX_BYTES": str(settings.scan_max_bytes),
        "ADX_SCAN_TIMEOUT_SECONDS": str(settings.scan_timeout_seconds),
        **storage_env(settings),
    }
    env.update({key: value for key, value in values.items() if value is not None})
    return env


def _plain(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value.value if isinstance(value, StrEnum) else value)


def storage_env(settings: Settings) -> dict[str, str | None]:
    """The storage settings: the provider and every provider's connection."""
    names = [
        name
        for name in Settings.model_fields
        if name.startswith(("storage_", "s3_", "gcs_", "azure_"))
    ]
    return {f"ADX_{name.upper()}": _plain(getattr(settings, name)) for name in names}


def start_worker(
    settings: Settings, name: str, http_port: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """``adx worker NAME`` as a child process; its logs go to ``log_path`` (a file, not a
    pipe nobody reads, which would block the worker once full)."""
    env = {**settings_env(settings), "ADX_WORKER_HTTP_PORT": str(http_port)}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "adx_cli", "worker", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
