"""What the S3 provider raises when the service fails, refuses or is missing, and what a
failed or cancelled upload leaves behind. Each against a real server on loopback: moto
(with IAM checks on where credentials must be refused), a stopped moto, a dead port, a
socket that never answers, and a tiny HTTP server for the statuses moto cannot be made
to return (throttling and 5xx)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from adx_core.storage import (
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageProvider,
    StorageUnavailableError,
    open_storage,
    tenant_prefix,
)
from adx_core.storage.keys import RESERVED_SEGMENT_PREFIX
from tests.support.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer
from tests.support.storage import provider_for, refused_port, settings_for

PREFIX = tenant_prefix("5b0f3a52-1d1e-4c55-8f43-6f0a9f1c2d7e")
MiB = 1024 * 1024
PART = 5 * MiB
# Long enough for one request on a loaded machine, far shorter than any retry backoff.
QUICK = 3.0


def bucket() -> str:
    return f"adx-{uuid.uuid4().hex[:16]}"


async def chunks_of(data: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(store: StorageProvider, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(key)])


def every_call(store: StorageProvider) -> list[Callable[[], Awaitable[object]]]:
    key = PREFIX + "a.bin"
    return [
        lambda: store.put(key, chunks_of(b"data")),
        lambda: read(store, key),
        lambda: store.stat(key),
        lambda: store.copy(key, PREFIX + "b.bin"),
        lambda: store.delete(key),
        lambda: store.list(PREFIX),
    ]


async def assert_every_call_raises(store: StorageProvider, error: type[StorageError]) -> None:
    for call in every_call(store):
        started = time.monotonic()
        with pytest.raises(error):
            await call()
        assert time.monotonic() - started < QUICK


def s3_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "ADX_S3_ENDPOINT": endpoint,
        "ADX_S3_REGION": REGION,
        "ADX_S3_BUCKET": bucket(),
        "ADX_S3_SECURE": "false",
        "ADX_S3_ACCESS_KEY": ACCESS_KEY,
        "ADX_S3_SECRET_KEY": SECRET_KEY,
        **extra,
    }


def raw_client(server: MotoServer) -> Any:
    """boto3, to look at the bucket independently of the provider under test."""
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


# The service is down.


async def test_a_stopped_server_is_unavailable_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = MotoServer(tmp_path / "moto")
    server.start()
    try:
        store = await provider_for("s3", server.env(bucket()), monkeypatch)
        await store.put(PREFIX + "a.bin", chunks_of(b"data"))
    finally:
        server.stop()
    try:
        await assert_every_call_raises(store, StorageUnavailableError)
    finally:
        await store.close()


async def test_a_dead_port_is_unavailable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with refused_port() as port:
        store = open_storage(settings_for("s3", s3_env(f"127.0.0.1:{port}"), monkeypatch), "s3")
        try:
            with pytest.raises(StorageUnavailableError, match="could not be reached"):
                await store.ensure_container()
            await assert_every_call_raises(store, StorageUnavailableError)
        finally:
            await store.close()


@pytest.fixture
def silent_port() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts connections and never answers; the connections it took."""
    accepted: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


async def test_a_silent_server_times_out_after_one_attempt(
    silent_port: tuple[int, list[socket.socket]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, accepted = silent_port
    env = s3_env(f"127.0.0.1:{port}", ADX_STORAGE_TIMEOUT_SECONDS="1")
    store = open_storage(settings_for("s3", env, monkeypatch), "s3")
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            await store.stat(PREFIX + "a.bin")
        elapsed = time.monotonic() - started
    finally:
        await store.close()
    assert 0.9 < elapsed < QUICK
    assert len(accepted) == 1  # no hidden retry


class FaultServer:
    """Answers every request with one status and S3 error code, and counts requests."""

    def __init__(self, status: int, code: str | None) -> None:
        self.requests = 0
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                fault.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if code is None:  # a proxy's HTML page, not S3's XML
                    body, kind = b"<html>bad gateway</html>", "text/html"
                else:
                    body = f"<Error><Code>{code}</Code><Message>no</Message></Error>".encode()
                    kind = "application/xml"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), (500, "InternalError"), (429, "TooManyRequests"), (502, None)],
)
async def test_throttling_and_server_errors_are_unavailable_without_retries(
    status: int, code: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer(status, code) as server:
        store = open_storage(settings_for("s3", s3_env(server.endpoint), monkeypatch), "s3")
        try:
            for call in every_call(store):
                before = server.requests
                with pytest.raises(StorageUnavailableError):
                    await call()
                assert server.requests - before == 1  # minio's own retries are off
        finally:
            await store.close()


# The credentials are refused.


@pytest.fixture(scope="module")
def iam_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto-iam"), iam_auth=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def iam_user(server: MotoServer, name: str, actions: list[str]) -> tuple[str, str]:
    """A user allowed ``actions`` on S3; its access key and secret."""
    server.allow_unsigned(3)  # the three IAM calls below
    iam = boto3.client(
        "iam",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
    )
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


async def test_refused_credentials_never_show_the_secret(
    iam_server: MotoServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    access_key, secret = iam_user(iam_server, f"adx-{uuid.uuid4().hex[:8]}", ["s3:*"])
    caplog.clear()  # boto3 logged the new secret while the test made it
    caplog.set_level(logging.DEBUG)
    env = {**iam_server.env(bucket()), "ADX_S3_ACCESS_KEY": access_key, "ADX_S3_SECRET_KEY": secret}
    good = await provider_for("s3", env, monkeypatch)
    try:
        await good.put(PREFIX + "a.bin", chunks_of(b"data"))
        assert await read(good, PREFIX + "a.bin") == b"data"
    finally:
        await good.close()

    wrong_secret = "wrong-" + secret[6:]
    refused = [
        {**env, "ADX_S3_SECRET_KEY": wrong_secret},  # a real key, a bad signature
        {**env, "ADX_S3_ACCESS_KEY": "AKIAUNKNOWNKEY000000"},  # a key the service never issued
    ]
    for variables in refused:
        store = open_storage(settings_for("s3", variables, monkeypatch), "s3")
        try:
            for call in every_call(store):
                with pytest.raises(StorageAuthError) as caught:
                    await call()
                for shown in (str(caught.value), repr(caught.value)):
                    assert secret not in shown
                    assert wrong_secret not in shown
                    assert access_key not in shown
            for shown in (str(store), repr(store)):
                assert secret not in shown
                assert wrong_secret not in shown
        finally:
            await store.close()
    assert caplog.records  # urllib3 logged its requests; none of them shows a secret
    assert secret not in caplog.text
    assert wrong_secret not in caplog.text


async def test_a_missing_permission_is_an_auth_error(
    iam_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_key, admin_secret = iam_user(iam_server, f"adx-{uuid.uuid4().hex[:8]}", ["s3:*"])
    env = {
        **iam_server.env(bucket()),
        "ADX_S3_ACCESS_KEY": admin_key,
        "ADX_S3_SECRET_KEY": admin_secret,
    }
    admin = await provider_for("s3", env, monkeypatch)
    await admin.put(PREFIX + "a.bin", chunks_of(b"data"))
    await admin.close()

    reader_key, reader_secret = iam_user(
        iam_server, f"adx-{uuid.uuid4().hex[:8]}", ["s3:GetObject", "s3:ListBucket"]
    )
    env = {**env, "ADX_S3_ACCESS_KEY": reader_key, "ADX_S3_SECRET_KEY": reader_secret}
    store = open_storage(settings_for("s3", env, monkeypatch), "s3")
    try:
        assert await read(store, PREFIX + "a.bin") == b"data"
        with pytest.raises(StorageAuthError):
            await store.put(PREFIX + "b.bin", chunks_of(b"data"))
        with pytest.raises(StorageAuthError):
            await store.delete(PREFIX + "a.bin")
    finally:
        await store.close()


# The bucket is missing.


async def test_a_missing_bucket_is_named_not_taken_for_a_missing_object(
    s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3_server.env(bucket())
    store = open_storage(settings_for("s3", env, monkeypatch), "s3")
    try:
        for call in [*every_call(store), lambda: store.exists(PREFIX + "a.bin")]:
            with pytest.raises(StorageError, match=r"bucket .* does not exist") as caught:
                await call()
            assert not isinstance(caught.value, ObjectNotFoundError)
            assert not caught.value.retryable
        await store.ensure_container()
        await store.ensure_container()  # idempotent
        assert not await store.exists(PREFIX + "a.bin")
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ADX_S3_BUCKET", "no/such", "not a valid S3 bucket name"),
        ("ADX_S3_ENDPOINT", "http://127.0.0.1:9000", "not host"),
    ],
)
async def test_bad_settings_are_refused_at_open(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**s3_env("127.0.0.1:1"), variable: value}
    with pytest.raises(StorageError, match=message) as caught:
        open_storage(settings_for("s3", env, monkeypatch), "s3")
    assert SECRET_KEY not in str(caught.value)


# Multipart uploads: the hash, and what a failed or cancelled one leaves.


@pytest.fixture
def name() -> str:
    return bucket()


@pytest.fixture
async def store(
    s3_server: MotoServer, name: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StorageProvider]:
    env = s3_server.env(name)
    provider = await provider_for("s3", env, monkeypatch, ADX_STORAGE_PART_SIZE=str(PART))
    try:
        yield provider
    finally:
        await provider.close()


def leftovers(server: MotoServer, name: str) -> tuple[list[str], int]:
    """Every key in the bucket, and the multipart uploads still open."""
    client = raw_client(server)
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=name).get("Contents", [])]
    uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
    return keys, len(uploads)


async def test_a_multipart_put_records_the_hash_and_keeps_it_on_copy(
    s3_server: MotoServer, name: str, store: StorageProvider
) -> None:
    data = bytes(range(256)) * (11 * MiB // 256 + 7)
    key = PREFIX + "big.bin"
    info = await store.put(key, chunks_of(data), content_type="text/csv")
    expected = hashlib.sha256(data).hexdigest()
    assert (info.size, info.sha256) == (len(data), expected)
    stat = await store.stat(key)
    assert (stat.size, stat.sha256, stat.content_type) == (len(data), expected, "text/csv")
    copied = await store.copy(key, PREFIX + "copy.bin")
    assert (copied.sha256, copied.content_type) == (expected, "text/csv")
    assert (await store.stat(PREFIX + "copy.bin")).sha256 == expected
    # The staging object is gone and never listed.
    assert leftovers(s3_server, name) == ([PREFIX + "big.bin", PREFIX + "copy.bin"], 0)


async def test_a_failing_source_leaves_nothing(
    s3_server: MotoServer, name: str, store: StorageProvider
) -> None:
    class SourceBroke(ConnectionResetError):
        """An OSError, as from a network source: it must not pass for an S3 outage."""

    async def source() -> AsyncIterator[bytes]:
        for _ in range(8):  # past the first part: the multipart upload has begun
            yield b"x" * MiB
        raise SourceBroke

    with pytest.raises(SourceBroke):
        await store.put(PREFIX + "broken.bin", source())
    assert leftovers(s3_server, name) == ([], 0)
    with pytest.raises(ObjectNotFoundError):
        await store.stat(PREFIX + "broken.bin")


async def test_a_cancelled_put_stops_uploading(
    s3_server: MotoServer, name: str, store: StorageProvider
) -> None:
    sent = 0
    stalled = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(8):
            sent += 1
            yield b"x" * MiB
        stalled.set()
        await asyncio.Event().wait()  # a source that never ends
        yield b""

    put = asyncio.create_task(store.put(PREFIX + "cancelled.bin", source()))
    await asyncio.wait_for(stalled.wait(), QUICK)
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    deadline = time.monotonic() + QUICK
    while leftovers(s3_server, name) != ([], 0):
        assert time.monotonic() < deadline, "the upload went on after the put was cancelled"
        await asyncio.sleep(0.1)
    assert sent == 8


async def test_staging_keys_are_never_listed(
    s3_server: MotoServer, name: str, store: StorageProvider
) -> None:
    # What a put that died between its upload and its copy leaves at the bucket root.
    staging = f"{RESERVED_SEGMENT_PREFIX}{uuid.uuid4().hex}"
    raw_client(s3_server).put_object(Bucket=name, Key=staging, Body=b"partial")
    assert (await store.list(RESERVED_SEGMENT_PREFIX[:4])).objects == []
