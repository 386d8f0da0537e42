"""The object storage servers the tests run against, all on loopback.

Each server module (``moto_server``, ``gcs_emulator``, ``azurite``) has a class with
``start()``, ``stop()`` and ``env(bucket)``: the ``ADX_*`` variables that point a provider
at that server and that bucket or container. ``provider_for`` opens a provider from those
variables the way a worker does, through the settings.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from pydantic import TypeAdapter

from adx_core.settings import Settings, StorageKind
from adx_core.storage import StorageProvider, open_storage

KINDS = tuple(kind.value for kind in StorageKind)


class StorageServer(Protocol):
    def start(self, timeout: float = ...) -> None: ...

    def stop(self) -> None: ...

    def env(self, bucket: str) -> dict[str, str]: ...

    @property
    def pid(self) -> int | None: ...


def settings_for(
    kind: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **overrides: str
) -> Settings:
    """Settings read from the environment, as a worker reads them."""
    monkeypatch.setenv("ADX_STORAGE_PROVIDER", kind)
    for name, value in {**env, **overrides}.items():
        monkeypatch.setenv(name, value)
    return Settings()


async def provider_for(
    kind: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **overrides: str
) -> StorageProvider:
    provider = open_storage(settings_for(kind, env, monkeypatch, **overrides), kind)
    await provider.ensure_container()
    return provider


def with_storage(settings: Settings, env: dict[str, str]) -> Settings:
    """``settings`` with the ``ADX_*`` storage variables of ``env`` applied, each value
    validated as its field's type (a secret becomes a SecretStr, "false" a bool)."""
    update: dict[str, object] = {}
    for name, value in env.items():
        field = name.removeprefix("ADX_").lower()
        annotation: Any = Settings.model_fields[field].annotation
        update[field] = TypeAdapter(annotation).validate_python(value)
    return settings.model_copy(update=update)


def local_env(root: Path) -> dict[str, str]:
    return {"ADX_STORAGE_ROOT": str(root)}


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound, so no
    other process can take it meanwhile, but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
