"""ClamdScanner against a real clamd that knows the EICAR test file (.ndb and .hdb)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
import zipfile
from collections.abc import AsyncIterator, Iterable

import pytest

from adx_core.scanning import (
    ClamdScanner,
    ScanLimitExceededError,
    ScannerUnavailableError,
    eicar_bytes,
    scanner_from_settings,
)
from adx_core.settings import Settings
from tests.support.clamd import HDB_SIGNATURE, NDB_SIGNATURE, ClamdFactory, ClamdServer

MiB = 1024 * 1024


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def each(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def scanner_for(server: ClamdServer, **options: float) -> ClamdScanner:
    settings = {"timeout": 5.0, "max_bytes": server.max_bytes, **options}
    return ClamdScanner(
        server.endpoint,
        timeout=float(settings["timeout"]),
        max_bytes=int(settings["max_bytes"]),
    )


# -- verdicts --------------------------------------------------------------------------------


async def test_clean_bytes_are_ok(clamd_server: ClamdServer) -> None:
    data = b"just a text file\n" * 100
    verdict = await scanner_for(clamd_server).scan(chunks_of(data, 500))
    assert verdict.clean
    assert verdict.signature is None
    assert verdict.scanned_bytes == len(data)
    assert verdict.scanner == "clamd"


async def test_eicar_is_found_by_its_body_signature(clamd_server: ClamdServer) -> None:
    scanner = scanner_for(clamd_server)
    # The whole file matches the .ndb and the .hdb; clamd names the body signature.
    alone = await scanner.scan(chunks_of(eicar_bytes(), 10))
    assert not alone.clean
    assert alone.signature == NDB_SIGNATURE == "ADX.Test.EICAR-NDB.UNOFFICIAL"
    assert alone.scanned_bytes == len(eicar_bytes())
    # Inside other bytes only the body signature can match.
    embedded = await scanner.scan(each([b"header " * 50, eicar_bytes(), b" trailer"]))
    assert embedded.signature == NDB_SIGNATURE


async def test_the_hash_signature_matches_the_whole_file_only(
    clamd_factory: ClamdFactory,
) -> None:
    server = clamd_factory(database_files=["adx-test.hdb"], unix_socket=False)
    scanner = scanner_for(server)
    alone = await scanner.scan(each([eicar_bytes()]))
    assert alone.signature == HDB_SIGNATURE == "ADX.Test.EICAR-HDB.UNOFFICIAL"
    assert (await scanner.scan(each([b"x", eicar_bytes()]))).clean


async def test_eicar_is_found_inside_a_zip_and_a_zip_inside_a_zip(
    clamd_server: ClamdServer,
) -> None:
    scanner = scanner_for(clamd_server)
    once = zipped("eicar.com", eicar_bytes())
    twice = zipped("inner.zip", once)
    for archive in (once, twice):
        verdict = await scanner.scan(chunks_of(archive, 64))
        assert not verdict.clean
        assert verdict.signature == NDB_SIGNATURE


async def test_many_megabytes_in_small_chunks_are_scanned_whole(clamd_server: ClamdServer) -> None:
    data = os.urandom(6 * MiB)
    started = time.monotonic()
    verdict = await scanner_for(clamd_server).scan(chunks_of(data, 4096))
    print(f"6 MiB in 4 KiB chunks: {time.monotonic() - started:.2f}s")
    assert verdict.clean
    assert verdict.scanned_bytes == len(data)
    # A caller's big chunk goes out in pieces of chunk_size, with EICAR at the very end.
    big = ClamdScanner(clamd_server.endpoint, timeout=5, max_bytes=8 * MiB, chunk_size=64 * 1024)
    found = await big.scan(each([data[: 3 * MiB] + eicar_bytes()]))
    assert found.signature == NDB_SIGNATURE


async def test_scans_run_side_by_side(clamd_server: ClamdServer) -> None:
    scanner = scanner_for(clamd_server)
    payloads = [os.urandom(100_000) for _ in range(4)] + [b"a" * 1000 + eicar_bytes()]
    verdicts = await asyncio.gather(*(scanner.scan(chunks_of(p, 8192)) for p in payloads))
    assert [v.clean for v in verdicts] == [True, True, True, True, False]


async def test_the_unix_socket_serves_the_same_verdicts(clamd_server: ClamdServer) -> None:
    assert clamd_server.socket_path is not None
    settings = Settings(
        env="test", scanner="clamd", clamd_address=clamd_server.unix_address, scan_timeout_seconds=5
    )
    scanner = scanner_from_settings(settings)
    assert isinstance(scanner, ClamdScanner)
    assert scanner.endpoint == str(clamd_server.socket_path)
    await scanner.ping()
    assert (await scanner.scan(each([b"clean"]))).clean
    found = await scanner.scan(each([zipped("e.com", eicar_bytes())]))
    assert found.signature == NDB_SIGNATURE


async def test_ping_answers(clamd_server: ClamdServer) -> None:
    settings = Settings(env="test", clamd_address=clamd_server.address)
    async with scanner_from_settings(settings) as scanner:
        await scanner.ping()


# -- limits: never clean ---------------------------------------------------------------------


async def test_a_stream_over_clamds_limit_is_refused_by_clamd(clamd_factory: ClamdFactory) -> None:
    server = clamd_factory(max_bytes=64 * 1024, unix_socket=False)
    # Our own limit is higher, so clamd's StreamMaxLength is what stops the stream.
    scanner = scanner_for(server, max_bytes=64 * MiB)
    assert (await scanner.scan(chunks_of(os.urandom(64 * 1024), 4096))).clean
    with pytest.raises(ScanLimitExceededError, match="size limit exceeded"):
        await scanner.scan(chunks_of(os.urandom(64 * 1024 + 1), 4096))
    # Far more than the socket buffers hold: clamd answers and closes while we are still
    # sending, our next write fails, and the answer it already sent is what we report.
    started = time.monotonic()
    with pytest.raises(ScanLimitExceededError, match="size limit exceeded"):
        await scanner.scan(chunks_of(b"\0" * (32 * MiB), 64 * 1024))
    assert time.monotonic() - started < 3


async def test_clamds_early_answer_ends_the_scan_while_the_source_is_slow(
    clamd_factory: ClamdFactory,
) -> None:
    server = clamd_factory(max_bytes=64 * 1024, unix_socket=False)
    scanner = scanner_for(server, max_bytes=64 * MiB)
    pulled: list[int] = []

    async def slow_source() -> AsyncIterator[bytes]:
        for index in range(10):
            pulled.append(index)
            yield b"\0" * (80 * 1024)
            await asyncio.sleep(1)  # storage taking its time for the next chunk

    started = time.monotonic()
    with pytest.raises(ScanLimitExceededError, match="size limit exceeded"):
        await scanner.scan(slow_source())
    # clamd answered while we waited for the source: no second chunk was asked for.
    assert time.monotonic() - started < 0.9
    assert pulled == [0]


async def test_an_archive_that_unpacks_past_clamds_limits_is_refused(
    clamd_factory: ClamdFactory,
) -> None:
    server = clamd_factory(max_bytes=256 * 1024, max_recursion=4, unix_socket=False)
    scanner = scanner_for(server)
    # 2 MiB of zeros deflate to a few KiB: under StreamMaxLength, over MaxScanSize once
    # clamd unpacks it. With AlertExceedsMax clamd says so rather than "OK".
    bomb = zipped("zeros.bin", b"\0" * (2 * MiB))
    assert len(bomb) < server.max_bytes
    with pytest.raises(ScanLimitExceededError, match=r"Heuristics\.Limits\.Exceeded\.MaxScanSize"):
        await scanner.scan(each([bomb]))
    # Nested deeper than MaxRecursion. Random content: clamd caches clean verdicts by
    # hash, and a cached inner archive would not be unpacked again.
    nested = os.urandom(32)
    for depth in range(6):
        nested = zipped(f"level{depth}.zip", nested)
    with pytest.raises(ScanLimitExceededError, match="MaxRecursion"):
        await scanner.scan(each([nested]))


async def test_our_limit_refuses_before_sending_past_it(clamd_server: ClamdServer) -> None:
    scanner = ClamdScanner(clamd_server.endpoint, timeout=5, max_bytes=1000)
    assert (await scanner.scan(each([b"a" * 600, b"b" * 400]))).scanned_bytes == 1000
    sent: list[int] = []

    async def counted() -> AsyncIterator[bytes]:
        for chunk in (b"a" * 600, b"b" * 401, b"c" * 5000):
            sent.append(len(chunk))
            yield chunk

    with pytest.raises(ScanLimitExceededError, match="scan limit of 1000 bytes"):
        await scanner.scan(counted())
    # The chunk that crossed the limit was the last one taken from the stream.
    assert sent == [600, 401]


# -- clamd going away ------------------------------------------------------------------------


async def test_a_stopped_clamd_is_unavailable_at_once(clamd_factory: ClamdFactory) -> None:
    server = clamd_factory()
    tcp = scanner_for(server)
    assert server.socket_path is not None
    unix = ClamdScanner(str(server.socket_path), timeout=5, max_bytes=server.max_bytes)
    server.stop()
    for scanner in (tcp, unix):
        started = time.monotonic()
        with pytest.raises(ScannerUnavailableError, match="cannot reach clamd"):
            await scanner.scan(each([b"data"]))
        with pytest.raises(ScannerUnavailableError):
            await scanner.ping()
        assert time.monotonic() - started < 1


async def test_clamd_killed_mid_stream_is_unavailable(clamd_factory: ClamdFactory) -> None:
    server = clamd_factory(unix_socket=False)
    scanner = scanner_for(server)

    async def dying() -> AsyncIterator[bytes]:
        for index in range(200):
            if index == 20:
                server.kill()
            yield os.urandom(16 * 1024)

    started = time.monotonic()
    with pytest.raises(ScannerUnavailableError):
        await scanner.scan(dying())
    assert time.monotonic() - started < 3


async def test_a_hung_clamd_times_out(clamd_factory: ClamdFactory) -> None:
    server = clamd_factory(unix_socket=False)
    assert server.pid is not None
    scanner = scanner_for(server, timeout=0.5)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        # The kernel still accepts the connection; nothing reads what we send.
        with pytest.raises(ScannerUnavailableError, match=r"0\.5s"):
            await scanner.scan(chunks_of(b"\0" * (16 * MiB), 64 * 1024))
        with pytest.raises(ScannerUnavailableError):
            await scanner.ping()
        assert time.monotonic() - started < 3
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def test_a_restarted_clamd_scans_again(clamd_factory: ClamdFactory) -> None:
    started = time.monotonic()
    server = clamd_factory()
    print(f"clamd start, EICAR database: {time.monotonic() - started:.2f}s")
    scanner = scanner_for(server)
    assert (await scanner.scan(each([b"before"]))).clean
    server.stop()
    with pytest.raises(ScannerUnavailableError):
        await scanner.scan(each([b"while stopped"]))
    server.restart()
    assert (await scanner.scan(each([b"after"]))).clean
    assert (await scanner.scan(each([eicar_bytes()]))).signature == NDB_SIGNATURE
