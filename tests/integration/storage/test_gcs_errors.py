"""How the GCS provider fails: each kind of trouble comes out as the right ``StorageError``,
at once (the client's retries are off), and no credential shows in an error, the
provider's repr or the logs.

gcp-storage-emulator checks no credentials, so refused credentials are shown two ways: a
loopback server answering 401 and 403 as GCS does, and the real credentials path
(application default credentials from GOOGLE_APPLICATION_CREDENTIALS) with a key file
that cannot be used, which fails before any request leaves the machine."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from adx_cli.devstack.net import free_port
from adx_core.storage import (
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageProvider,
    StorageUnavailableError,
    open_storage,
    tenant_prefix,
)
from tests.support.gcs_emulator import PROJECT, GcsEmulator
from tests.support.storage import StorageServer, provider_for, refused_port, settings_for
from tests.support.storage_errors import calls as shared_calls
from tests.support.storage_errors import drain, one_chunk, raises_quickly, shows_nothing_of
from tests.support.storage_errors import silent_port as hung_port

PREFIX = tenant_prefix("5b0f3a52-1d1e-4c55-8f43-6f0a9f1c2d7e")
MiB = 1024 * 1024


def bucket() -> str:
    return f"adx-{uuid.uuid4().hex[:16]}"


def env_for(port: int) -> dict[str, str]:
    return {
        "ADX_GCS_ENDPOINT": f"http://127.0.0.1:{port}",
        "ADX_GCS_PROJECT": PROJECT,
        "ADX_GCS_BUCKET": bucket(),
    }


async def parts(size: int) -> AsyncIterator[bytes]:
    for start in range(0, size, MiB):
        yield b"p" * min(MiB, size - start)


def calls(store: StorageProvider) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of each kind; ``put_large`` takes the resumable upload."""
    return {
        **shared_calls(store, PREFIX),
        "put_large": lambda: store.put(PREFIX + "big", parts(11 * MiB)),
    }


@pytest.fixture
def silent_port() -> Iterator[int]:
    with hung_port() as port:
        yield port


class Answering:
    """A loopback HTTP server that answers every request with one status and GCS's error
    body, and counts the requests."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Answering:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    await reader.readexactly(int(value))
            body = json.dumps(
                {"error": {"code": self.status, "message": self.reason, "errors": []}}
            ).encode()
            writer.write(
                f"HTTP/1.1 {self.status} {self.reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            writer.close()


async def test_a_server_that_is_down_is_unavailable_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with refused_port() as port:
        store = open_storage(settings_for("gcs", env_for(port), monkeypatch), "gcs")
        try:
            for name, call in calls(store).items():
                exc = await raises_quickly(StorageUnavailableError, call)
                assert exc.retryable, name
        finally:
            await store.close()


async def test_a_stopped_server_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = GcsEmulator(tmp_path / "gcs")
    server.start()
    try:
        store = await provider_for("gcs", server.env(bucket()), monkeypatch)
        await store.put(PREFIX + "a", one_chunk(b"data"))
    finally:
        server.stop()
    try:
        # The first calls meet the connection kept alive from before, the later ones a
        # refused connect: both are the service being away.
        for call in calls(store).values():
            await raises_quickly(StorageUnavailableError, call)
    finally:
        await store.close()


async def test_a_server_that_never_answers_times_out(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(
        "gcs", env_for(silent_port), monkeypatch, ADX_STORAGE_TIMEOUT_SECONDS="1"
    )
    store = open_storage(settings, "gcs")
    try:
        await raises_quickly(StorageUnavailableError, lambda: store.stat(PREFIX + "a"))
        await raises_quickly(StorageUnavailableError, lambda: store.list(PREFIX))
        await raises_quickly(StorageUnavailableError, lambda: drain(store.get(PREFIX + "a")))
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("status", "reason"), [(429, "Too Many Requests"), (503, "Service Unavailable")]
)
async def test_a_throttling_server_is_asked_once(
    status: int, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429 and 503 are how GCS throttles: retryable, and not retried by the client."""
    async with Answering(status, reason) as server:
        store = open_storage(settings_for("gcs", env_for(server.port), monkeypatch), "gcs")
        try:
            for name, call in calls(store).items():
                before = server.requests
                exc = await raises_quickly(StorageUnavailableError, call)
                assert str(status) in str(exc), name
                assert server.requests == before + 1, name
        finally:
            await store.close()


@pytest.mark.parametrize(("status", "reason"), [(401, "Unauthorized"), (403, "Forbidden")])
async def test_refused_credentials_are_an_auth_error(
    status: int, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Answering(status, reason) as server:
        store = open_storage(settings_for("gcs", env_for(server.port), monkeypatch), "gcs")
        try:
            for name, call in calls(store).items():
                before = server.requests
                exc = await raises_quickly(StorageAuthError, call)
                assert not exc.retryable, name
                assert server.requests == before + 1, name
        finally:
            await store.close()


def a_private_key() -> str:
    """Shaped like a service account's key, usable by nobody."""
    return (
        "-----BEGIN PRIVATE KEY-----\n"
        + secrets.token_urlsafe(600)
        + "\n-----END PRIVATE KEY-----\n"
    )


def real_gcs_env(credentials: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No endpoint: the provider goes the way of real GCS, credentials from the file."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    monkeypatch.delenv("ADX_GCS_ENDPOINT", raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    return {"ADX_GCS_PROJECT": PROJECT, "ADX_GCS_BUCKET": bucket()}


async def test_an_unusable_credentials_file_is_an_auth_error_that_hides_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = a_private_key()
    credentials = tmp_path / "service-account.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": secrets.token_hex(20),
                "private_key": key,
                "client_email": f"adx@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                # Never reached: the key fails to load first. Loopback all the same.
                "token_uri": f"http://127.0.0.1:{free_port()}/token",
            }
        )
    )
    env = real_gcs_env(credentials, monkeypatch)
    store = open_storage(settings_for("gcs", env, monkeypatch), "gcs")
    try:
        for name, call in calls(store).items():
            exc = await raises_quickly(StorageAuthError, call)
            assert not exc.retryable, name
            shows_nothing_of(key, exc)
        assert key not in repr(store)
        assert key not in str(store)
    finally:
        await store.close()
    assert key not in caplog.text


async def test_a_missing_credentials_file_is_an_auth_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = real_gcs_env(tmp_path / "nowhere.json", monkeypatch)
    store = open_storage(settings_for("gcs", env, monkeypatch), "gcs")
    try:
        await raises_quickly(StorageAuthError, lambda: store.stat(PREFIX + "a"))
    finally:
        await store.close()


async def test_a_missing_bucket_is_named(
    gcs_server: StorageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = gcs_server.env(bucket())
    store = open_storage(settings_for("gcs", env, monkeypatch), "gcs")  # not created
    try:
        for name, call in calls(store).items():
            if name == "ensure_container":
                continue
            exc = await raises_quickly(StorageError, call)
            assert not isinstance(exc, ObjectNotFoundError), name
            assert not exc.retryable, name
            assert env["ADX_GCS_BUCKET"] in str(exc), name
            assert "does not exist" in str(exc), name
        await store.ensure_container()
        await store.put(PREFIX + "a", one_chunk(b"data"))
        with pytest.raises(ObjectNotFoundError):
            await store.stat(PREFIX + "missing")
    finally:
        await store.close()


async def test_a_page_token_from_elsewhere_is_refused(
    gcs_server: StorageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await provider_for("gcs", gcs_server.env(bucket()), monkeypatch)
    try:
        with pytest.raises(ValueError, match="page token"):
            await store.list(PREFIX, page_token="someone-else's")
    finally:
        await store.close()
