"""One contract, four providers: every test here runs unchanged against local, S3 (moto),
GCS (gcp-storage-emulator) and Azure (Azurite), each a real server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from adx_core.storage import (
    InvalidRangeError,
    ObjectNotFoundError,
    StorageProvider,
    UnsafeKeyError,
    tenant_key,
    tenant_prefix,
)

TENANT = "5b0f3a52-1d1e-4c55-8f43-6f0a9f1c2d7e"
OTHER = "0e9d1a44-7b6c-4f1e-9a55-3c2b1d0e9f8a"
PREFIX = tenant_prefix(TENANT)
MiB = 1024 * 1024


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(store: StorageProvider, key: str, **kwargs: int | None) -> bytes:
    return b"".join([chunk async for chunk in store.get(key, **kwargs)])


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset, so a range read from the wrong place shows."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def test_put_then_get_returns_the_bytes_and_their_hash(store: StorageProvider) -> None:
    data = pattern(300_000)
    key = PREFIX + "files/a.bin"
    info = await store.put(key, chunks_of(data), content_type="image/png")
    assert info.key == key
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await read(store, key) == data
    stat = await store.stat(key)
    assert stat.size == len(data)
    assert stat.content_type == "image/png"
    assert stat.sha256 in (None, info.sha256)  # the local provider needs xattrs for it


async def test_put_replaces_an_object(store: StorageProvider) -> None:
    key = PREFIX + "replace.txt"
    await store.put(key, chunks_of(b"first version"))
    await store.put(key, chunks_of(b"second"))
    assert await read(store, key) == b"second"
    assert (await store.stat(key)).size == 6


async def test_an_empty_object(store: StorageProvider) -> None:
    key = PREFIX + "empty"
    info = await store.put(key, chunks_of(b""))
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read(store, key) == b""
    assert await store.checksum(key) == info.sha256


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 10), (5, 100), (99_990, 10), (99_990, 1000), (1, None), (0, 0), (100_000, None)],
)
async def test_byte_ranges(store: StorageProvider, offset: int, length: int | None) -> None:
    """A range past the end is cut at the end; one starting at the end is empty."""
    data = pattern(100_000, seed=1)
    key = PREFIX + "ranged.bin"
    await store.put(key, chunks_of(data))
    end = None if length is None else offset + length
    assert await read(store, key, offset=offset, length=length) == data[offset:end]


@pytest.mark.parametrize(("offset", "length"), [(100_001, None), (-1, None), (0, -5)])
async def test_bad_ranges_are_refused(
    store: StorageProvider, offset: int, length: int | None
) -> None:
    key = PREFIX + "ranged.bin"
    await store.put(key, chunks_of(pattern(100_000)))
    with pytest.raises(InvalidRangeError):
        await read(store, key, offset=offset, length=length)


async def test_missing_objects(store: StorageProvider) -> None:
    key = PREFIX + "nothing-here"
    with pytest.raises(ObjectNotFoundError):
        await store.stat(key)
    with pytest.raises(ObjectNotFoundError):
        await read(store, key)
    with pytest.raises(ObjectNotFoundError):
        await store.checksum(key)
    with pytest.raises(ObjectNotFoundError):
        await store.copy(key, PREFIX + "copy")
    assert not await store.exists(key)


async def test_delete_is_idempotent(store: StorageProvider) -> None:
    key = PREFIX + "gone.txt"
    await store.put(key, chunks_of(b"x"))
    await store.delete(key)
    assert not await store.exists(key)
    await store.delete(key)  # a retried delete succeeds
    await store.delete(PREFIX + "never-existed")


async def test_copy_keeps_bytes_hash_and_type(store: StorageProvider) -> None:
    data = pattern(1_000_000, seed=2)
    source, target = PREFIX + "src/a.bin", PREFIX + "dst/deep/a.bin"
    written = await store.put(source, chunks_of(data), content_type="text/csv")
    copied = await store.copy(source, target)
    assert copied.key == target
    assert copied.size == len(data)
    assert await read(store, target) == data
    assert await store.checksum(target) == written.sha256
    stat = await store.stat(target)
    assert stat.content_type == "text/csv"
    assert stat.sha256 in (None, written.sha256)
    assert await read(store, source) == data  # the source stays


async def test_copy_overwrites_the_target(store: StorageProvider) -> None:
    await store.put(PREFIX + "a", chunks_of(b"new"))
    await store.put(PREFIX + "b", chunks_of(b"old and longer"))
    await store.copy(PREFIX + "a", PREFIX + "b")
    assert await read(store, PREFIX + "b") == b"new"


async def test_checksum_is_sha256_of_the_stored_bytes(store: StorageProvider) -> None:
    data = pattern(2 * MiB + 17, seed=3)
    await store.put(PREFIX + "c.bin", chunks_of(data, 300_000))
    assert await store.checksum(PREFIX + "c.bin") == hashlib.sha256(data).hexdigest()


async def test_list_pages_through_every_key_in_order(store: StorageProvider) -> None:
    keys = sorted(
        [PREFIX + f"docs/{i:02d}.txt" for i in range(12)]
        + [PREFIX + f"docs/sub/{i}.txt" for i in range(5)]
        + [PREFIX + "docs-2/x.txt", PREFIX + "docs.txt", PREFIX + "z"]
    )
    await asyncio.gather(*(store.put(key, chunks_of(key.encode())) for key in keys))
    # A sibling tenant whose id shares nothing but the folder: it must never show up.
    await store.put(tenant_prefix(OTHER) + "docs/00.txt", chunks_of(b"other"))

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await store.list(PREFIX, page_token=token, page_size=7)
        pages += 1
        assert len(page.objects) <= 7
        seen.extend(info.key for info in page.objects)
        if page.next_token is None:
            break
        token = page.next_token
    assert seen == keys
    assert pages in (3, 4)  # 20 keys in pages of 7; a provider may end on an empty page
    sizes = {info.key: info.size for info in (await store.list(PREFIX)).objects}
    assert sizes[PREFIX + "docs.txt"] == len(PREFIX + "docs.txt")


async def test_list_by_a_partial_prefix(store: StorageProvider) -> None:
    for key in ("docs/a", "docs/b", "docs-2/c", "other/d"):
        await store.put(PREFIX + key, chunks_of(b"1"))
    page = await store.list(PREFIX + "docs/")
    assert [info.key for info in page.objects] == [PREFIX + "docs/a", PREFIX + "docs/b"]
    page = await store.list(PREFIX + "docs")
    assert len(page.objects) == 3
    assert (await store.list(PREFIX + "nothing/")).objects == []


async def test_prefix_helpers(store: StorageProvider) -> None:
    assert await store.ensure_prefix(PREFIX) is True
    assert await store.ensure_prefix(PREFIX) is False
    assert await store.prefix_exists(PREFIX)
    await store.put(PREFIX + "a/1", chunks_of(b"12345"))
    await store.put(PREFIX + "a/2", chunks_of(b"123"))
    usage = await store.prefix_usage(PREFIX)
    assert (usage.objects, usage.bytes) == (2, 8)
    target = tenant_prefix(OTHER)
    assert await store.copy_prefix(PREFIX + "a/", target + "copied/") == 2
    assert await read(store, target + "copied/2") == b"123"
    assert await store.delete_prefix(PREFIX) == 2
    assert not await store.prefix_exists(PREFIX)
    assert await store.delete_prefix(PREFIX) == 0
    assert await store.exists(target + "copied/1")


async def test_many_writers_at_once(store: StorageProvider) -> None:
    blobs = {PREFIX + f"p/{i}": pattern(50_000 + i, seed=i) for i in range(16)}
    await asyncio.gather(*(store.put(key, chunks_of(data)) for key, data in blobs.items()))
    for key, data in blobs.items():
        assert await read(store, key) == data


async def test_a_64_mb_object_streams_in_bounded_memory(store: StorageProvider) -> None:
    """64 MiB goes up in parts and comes down in chunks; Python never holds much of it.

    The bound is three parts of 5 MiB plus slack for the client libraries' buffers, a
    quarter of the object. A provider that buffered the whole object would use over 64 MiB.
    """
    size = 64 * MiB
    expected = hashlib.sha256()
    block = pattern(MiB, seed=9)

    async def source() -> AsyncIterator[bytes]:
        for i in range(size // MiB):
            chunk = i.to_bytes(4, "big") + block[4:]
            expected.update(chunk)
            yield chunk

    key = PREFIX + "large/blob.bin"
    tracemalloc.start()
    try:
        info = await store.put(key, source())
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        largest = 0
        async for chunk in store.get(key):
            digest.update(chunk)
            largest = max(largest, len(chunk))
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == size
    assert info.sha256 == expected.hexdigest()
    assert digest.hexdigest() == expected.hexdigest()
    assert (await store.stat(key)).size == size
    assert put_peak < 16 * MiB + 3 * 5 * MiB, f"put peaked at {put_peak / MiB:.1f} MiB"
    assert get_peak < 16 * MiB + 3 * 5 * MiB, f"get peaked at {get_peak / MiB:.1f} MiB"
    assert largest <= 8 * MiB
    # A range deep inside the object comes from the right place.
    middle = await read(store, key, offset=40 * MiB + 3, length=10)
    assert middle == (40).to_bytes(4, "big")[3:] + block[4:13]


HOSTILE = [
    "",
    "../escape",
    "a/../../etc/passwd",
    "tenants/../..",
    "/etc/passwd",
    "a//b",
    "./a",
    "a/./b",
    "a/..",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\x1bb",
    "a\x7fb",
    "a\x85b",
    "a\\b",
    "..\\..\\windows",
    "x" * 1025,
    "é" * 600,
    "a/.adx-partial-x",
]


@pytest.mark.parametrize("key", HOSTILE)
async def test_hostile_keys_are_refused_before_any_io(store: StorageProvider, key: str) -> None:
    good = PREFIX + "good"
    await store.put(good, chunks_of(b"good"))
    calls = [
        lambda: store.put(key, chunks_of(b"evil")),
        lambda: read(store, key),
        lambda: store.stat(key),
        lambda: store.copy(good, key),
        lambda: store.copy(key, good),
        lambda: store.delete(key),
        lambda: store.checksum(key),
        lambda: store.exists(key),
    ]
    for call in calls:
        with pytest.raises(UnsafeKeyError):
            await call()
    if key.endswith("/") or key == "" or "/.." in key or key.startswith(("/", "..")):
        with pytest.raises(UnsafeKeyError):
            await store.list(key)
    assert await read(store, good) == b"good"  # nothing was overwritten on the way


@pytest.mark.parametrize("relative", [k for k in HOSTILE if k])
def test_tenant_keys_refuse_input_that_escapes(relative: str) -> None:
    with pytest.raises(UnsafeKeyError):
        tenant_key(TENANT, relative)


async def test_page_size_is_bounded(store: StorageProvider) -> None:
    for size in (0, -1, 1001):
        with pytest.raises(ValueError, match="page_size"):
            await store.list(PREFIX, page_size=size)


async def test_a_write_the_service_confirms_matches_what_was_sent(
    store: StorageProvider,
) -> None:
    """``service_verified`` is a promise: when a provider sets it, the stored bytes are the
    bytes sent (S3 sets it for single-part uploads, from the ETag)."""
    data = pattern(50_000, seed=11)
    info = await store.put(PREFIX + "confirmed", chunks_of(data))
    if info.service_verified:
        assert await store.checksum(PREFIX + "confirmed") == hashlib.sha256(data).hexdigest()
    assert info.service_verified is (store.name == "s3")
