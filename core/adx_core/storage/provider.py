"""The storage provider interface that activities use.

A provider implements seven primitives: ``put`` (streamed), ``get`` (streamed, with a byte
range), ``stat``, ``copy``, ``delete``, ``list`` (paginated) and ``checksum``. The prefix
helpers every tenant operation uses are written once here, on top of the primitives.

Rules every provider keeps:
- every key is checked with :func:`validate_key` before any I/O;
- no whole object is ever held in memory: data moves in chunks of at most the part size;
- writes are atomic: a reader sees the old object or the new one, never a partial one;
- ``put`` records the SHA-256 of the content in the object's metadata, where the provider
  has metadata, and ``checksum`` computes it from the bytes stored;
- deleting a missing object succeeds;
- errors are the classes in :mod:`adx_core.storage.errors`, never the client library's.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from adx_core.storage.errors import InvalidRangeError, ObjectNotFoundError, UnsafeKeyError
from adx_core.storage.keys import validate_prefix

# A folder's marker object: tenant prefixes exist even when they hold no file.
MARKER = ".adx-prefix"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# The size of the chunks ``get`` yields and of the parts a multipart upload sends.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class PrefixUsage:
    objects: int
    bytes: int


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # The SHA-256 recorded in the object's metadata at ``put``; ``None`` when the object was
    # written by someone else or the listing does not carry metadata (S3's does not).
    sha256: str | None = None
    content_type: str | None = None
    # Set by ``put`` only: the service answered with its own digest of the bytes it stored
    # (S3's ETag of a single-part upload, an MD5), and it matches the bytes sent. A copy
    # can then trust the write without reading it back.
    service_verified: bool = False


@dataclass(frozen=True)
class ListPage:
    objects: list[ObjectInfo]
    # Opaque: pass it back to get the next page. ``None`` on the last page.
    next_token: str | None


def check_range(offset: int, length: int | None) -> None:
    if offset < 0:
        raise InvalidRangeError(f"the range starts at {offset}, before the object")
    if length is not None and length < 0:
        raise InvalidRangeError(f"the range has a negative length ({length})")


def check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")


def is_marker(key: str) -> bool:
    return key == MARKER or key.endswith("/" + MARKER)


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


class StorageProvider(abc.ABC):
    """One object store. ``name`` is its kind: ``local``, ``s3``, ``gcs`` or ``azure``."""

    name: str

    # The seven primitives.

    @abc.abstractmethod
    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Write the chunks as one object, replacing any object at ``key``. Large objects go
        up in parts (multipart, resumable or staged blocks). The result carries the size and
        the SHA-256 of what was written."""

    @abc.abstractmethod
    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream the object, or ``length`` bytes of it from ``offset``. A range past the end
        is cut at the end; one that starts past the end raises ``InvalidRangeError``; one
        that starts at the end yields nothing. Raises ``ObjectNotFoundError``."""

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Size, recorded SHA-256 and content type. Raises ``ObjectNotFoundError``."""

    @abc.abstractmethod
    async def copy(self, source_key: str, target_key: str) -> ObjectInfo:
        """Copy inside this provider, server-side where the service can. Keeps the recorded
        SHA-256 and content type. Raises ``ObjectNotFoundError`` for a missing source."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object. A missing object is not an error."""

    @abc.abstractmethod
    async def list(
        self, prefix: str, *, page_token: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> ListPage:
        """One page of the objects whose key starts with ``prefix``, in key order, at any
        depth. ``page_size`` is at most 1000."""

    async def checksum(self, key: str) -> str:
        """The SHA-256 (hex) of the bytes stored, read back in chunks."""
        digest = hashlib.sha256()
        async for chunk in self.get(key):
            digest.update(chunk)
        return digest.hexdigest()

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    async def ensure_container(self) -> None:
        """Create the bucket or container if it is missing (development and tests; production
        buckets are made by whoever owns the account)."""
        return None

    async def close(self) -> None:
        """Release connections."""
        return None

    # Prefix helpers, the same for every provider.

    async def iterate(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        token: str | None = None
        while True:
            page = await self.list(prefix, page_token=token)
            for info in page.objects:
                yield info
            if page.next_token is None:
                return
            token = page.next_token

    async def ensure_prefix(self, prefix: str) -> bool:
        """Create the prefix's marker object. ``False`` if it already existed."""
        marker = _prefix(prefix) + MARKER
        if await self.exists(marker):
            return False
        await self.put(marker, single_chunk(b""))
        return True

    async def prefix_exists(self, prefix: str) -> bool:
        return await self.exists(_prefix(prefix) + MARKER)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove everything under the prefix; the number of objects removed (0 if absent)."""
        prefix = _prefix(prefix)
        removed = 0
        # Collect a page before deleting from it, so the listing is not pulled from under us.
        while True:
            page = await self.list(prefix)
            if not page.objects:
                return removed
            for info in page.objects:
                await self.delete(info.key)
                removed += not is_marker(info.key)

    async def prefix_usage(self, prefix: str) -> PrefixUsage:
        """The objects under the prefix and their total size; zero for an absent prefix."""
        objects = size = 0
        async for info in self.iterate(_prefix(prefix)):
            if not is_marker(info.key):
                objects += 1
                size += info.size
        return PrefixUsage(objects=objects, bytes=size)

    async def copy_prefix(self, source: str, target: str) -> int:
        """Copy everything under ``source`` to the same relative key under ``target``."""
        source, target = _prefix(source), _prefix(target)
        copied = 0
        async for info in self.iterate(source):
            if not is_marker(info.key):
                await self.copy(info.key, target + info.key[len(source) :])
                copied += 1
        return copied

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Write one small object (an export manifest); replaces an existing one."""
        await self.put(key, single_chunk(data))


def _prefix(prefix: str) -> str:
    if not prefix.endswith("/"):
        raise UnsafeKeyError(f"a prefix ends with '/': {prefix!r}")
    return validate_prefix(prefix)
