"""How the Azure provider fails: each kind of trouble comes out as the right ``StorageError``,
at once (the SDK's retries are off), and no key shows in an error, the provider's repr or
the logs. Azurite checks Shared Key signatures, so a wrong key is refused as Azure would."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adx_core.storage import (
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
    open_storage,
    tenant_prefix,
)
from tests.support.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from tests.support.storage import StorageServer, provider_for, refused_port, settings_for
from tests.support.storage_errors import calls as shared_calls
from tests.support.storage_errors import one_chunk, raises_quickly, shows_nothing_of
from tests.support.storage_errors import silent_port as hung_port

PREFIX = tenant_prefix("5b0f3a52-1d1e-4c55-8f43-6f0a9f1c2d7e")


def container() -> str:
    return f"adx-{uuid.uuid4().hex[:16]}"


def a_key() -> str:
    """A key shaped like a real account key, and known to nobody."""
    return base64.b64encode(os.urandom(64)).decode()


def connection_string(port: int, key: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};"
    )


def env_for(port: int, key: str) -> dict[str, str]:
    return {
        "ADX_AZURE_CONTAINER": container(),
        "ADX_AZURE_CONNECTION_STRING": connection_string(port, key),
    }


@pytest.fixture
def silent_port() -> Iterator[int]:
    with hung_port() as port:
        yield port


async def test_a_server_that_is_down_is_unavailable_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with refused_port() as port:
        env = env_for(port, a_key())
        store = open_storage(settings_for("azure", env, monkeypatch), "azure")
        try:
            for name, call in shared_calls(store, PREFIX).items():
                exc = await raises_quickly(StorageUnavailableError, call)
                assert exc.retryable, name
        finally:
            await store.close()


async def test_a_stopped_server_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Azurite(tmp_path / "azurite")
    server.start()
    try:
        store = await provider_for("azure", server.env(container()), monkeypatch)
        await store.put(PREFIX + "a", one_chunk(b"data"))
    finally:
        server.stop()
    try:
        # The first calls meet the connection kept alive from before, the later ones a
        # refused connect: both are the service being away.
        for call in shared_calls(store, PREFIX).values():
            await raises_quickly(StorageUnavailableError, call)
    finally:
        await store.close()


async def test_a_server_that_never_answers_times_out(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(
        "azure", env_for(silent_port, a_key()), monkeypatch, ADX_STORAGE_TIMEOUT_SECONDS="1"
    )
    store = open_storage(settings, "azure")
    try:
        await raises_quickly(StorageUnavailableError, lambda: store.stat(PREFIX + "a"))
        await raises_quickly(StorageUnavailableError, lambda: store.list(PREFIX))
    finally:
        await store.close()


async def test_a_busy_server_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """503 ServerBusy is what Azure answers when it throttles: retryable, and not retried
    by the SDK. The server here answers nothing else, and counts the requests."""
    requests = 0

    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                requests += 1
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nx-ms-error-code: ServerBusy\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            writer.close()

    server = await asyncio.start_server(busy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = open_storage(settings_for("azure", env_for(port, a_key()), monkeypatch), "azure")
    try:
        for call in (lambda: store.stat(PREFIX + "a"), lambda: store.list(PREFIX)):
            before = requests
            exc = await raises_quickly(StorageUnavailableError, call)
            assert "503" in str(exc)
            assert requests == before + 1
    finally:
        await store.close()
        server.close()


async def test_a_wrong_key_is_refused_and_never_shown(
    azure_server: StorageServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert isinstance(azure_server, Azurite)
    key = a_key()
    env = env_for(azure_server.port, key)
    store = open_storage(settings_for("azure", env, monkeypatch), "azure")
    try:
        for name, call in shared_calls(store, PREFIX).items():
            exc = await raises_quickly(StorageAuthError, call)
            assert not exc.retryable, name
            shows_nothing_of(key, exc)
            shows_nothing_of(env["ADX_AZURE_CONNECTION_STRING"], exc)
        assert key not in repr(store)
        assert key not in str(store)
    finally:
        await store.close()
    assert key not in caplog.text


async def test_a_wrong_key_given_with_the_account_url(
    azure_server: StorageServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert isinstance(azure_server, Azurite)
    key = a_key()
    env = {
        "ADX_AZURE_CONTAINER": container(),
        "ADX_AZURE_ACCOUNT_URL": azure_server.account_url,
        "ADX_AZURE_ACCOUNT_KEY": key,
    }
    store = open_storage(settings_for("azure", env, monkeypatch), "azure")
    try:
        exc = await raises_quickly(StorageAuthError, store.ensure_container)
        shows_nothing_of(key, exc)
        assert key not in repr(store)
    finally:
        await store.close()
    assert key not in caplog.text


async def test_the_account_url_and_key_work(
    azure_server: StorageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way to give credentials, with Azurite's published development key."""
    assert isinstance(azure_server, Azurite)
    env = {
        "ADX_AZURE_CONTAINER": container(),
        "ADX_AZURE_ACCOUNT_URL": azure_server.account_url,
        "ADX_AZURE_ACCOUNT_KEY": ACCOUNT_KEY,
    }
    store = await provider_for("azure", env, monkeypatch)
    try:
        info = await store.put(PREFIX + "a", one_chunk(b"data"))
        assert await store.stat(PREFIX + "a") == info
        assert ACCOUNT_NAME in repr(store)
        assert ACCOUNT_KEY not in repr(store)
    finally:
        await store.close()


def test_a_malformed_connection_string_is_not_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = a_key()
    env = {"ADX_AZURE_CONTAINER": container(), "ADX_AZURE_CONNECTION_STRING": secret}
    with pytest.raises(StorageAuthError) as caught:
        open_storage(settings_for("azure", env, monkeypatch), "azure")
    shows_nothing_of(secret, caught.value)


async def test_a_missing_container_is_named(
    azure_server: StorageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = azure_server.env(container())
    store = open_storage(settings_for("azure", env, monkeypatch), "azure")  # not created
    try:
        for name, call in shared_calls(store, PREFIX).items():
            if name == "ensure_container":
                continue
            exc = await raises_quickly(StorageError, call)
            assert not isinstance(exc, ObjectNotFoundError), name
            assert not exc.retryable, name
            assert env["ADX_AZURE_CONTAINER"] in str(exc)
            assert "does not exist" in str(exc)
        await store.ensure_container()
        await store.put(PREFIX + "a", one_chunk(b"data"))
        with pytest.raises(ObjectNotFoundError):
            await store.stat(PREFIX + "missing")
    finally:
        await store.close()
