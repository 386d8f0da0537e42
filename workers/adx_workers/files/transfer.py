"""Moving one object between providers, verified, and telling which side failed.

Used by the storage activities and the migration batches. Bytes stream from the source's
``get`` into the target's ``put`` and are hashed on the way; afterwards the target is read
back and must hash the same. Memory stays at a few chunks whatever the object size.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from temporalio.exceptions import ApplicationError

from adx_core.contracts.storage import (
    CHECKSUM_MISMATCH,
    OBJECT_NOT_FOUND,
    SOURCE_REFUSED,
    SOURCE_UNAVAILABLE,
    TARGET_REFUSED,
    TARGET_UNAVAILABLE,
    UNSAFE_KEY,
)
from adx_core.storage import (
    ChecksumMismatchError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageProvider,
    UnsafeKeyError,
)
from adx_core.storage.provider import DEFAULT_CONTENT_TYPE


class SideError(Exception):
    """A storage error with the side it came from: ``source`` or ``target``."""

    def __init__(self, side: str, error: StorageError) -> None:
        super().__init__(f"{side}: {error}")
        self.side = side
        self.error = error


def as_application_error(exc: SideError) -> ApplicationError:
    """The Temporal failure for a storage error: auth, a missing object and an unsafe key
    are permanent; an outage, throttling and a bad checksum are retried by the policy."""
    error = exc.error
    target = exc.side == "target"
    if isinstance(error, UnsafeKeyError):
        kind, retry = UNSAFE_KEY, False
    elif isinstance(error, ObjectNotFoundError):
        kind, retry = OBJECT_NOT_FOUND, False
    elif isinstance(error, StorageAuthError):
        kind, retry = (TARGET_REFUSED if target else SOURCE_REFUSED), False
    elif isinstance(error, ChecksumMismatchError):
        kind, retry = CHECKSUM_MISMATCH, True
    else:
        kind, retry = (TARGET_UNAVAILABLE if target else SOURCE_UNAVAILABLE), error.retryable
    return ApplicationError(f"{exc.side} {error}", type=kind, non_retryable=not retry)


class _HashingStream:
    """The source's chunks, hashed as they pass; remembers a failure of the source, so a
    target that wraps whatever its input raised cannot make it look like its own."""

    def __init__(self, source: StorageProvider, key: str) -> None:
        self._source = source
        self._key = key
        self.digest = hashlib.sha256()
        self.size = 0
        self.error: StorageError | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._source.get(self._key):
                self.digest.update(chunk)
                self.size += len(chunk)
                yield chunk
        except StorageError as exc:
            self.error = exc
            raise


@dataclass(frozen=True)
class Transferred:
    size: int
    sha256: str


@dataclass(frozen=True)
class SourceObject:
    size: int
    sha256: str
    content_type: str


async def source_object(source: StorageProvider, key: str) -> SourceObject:
    """Size, SHA-256 and type of a source object: the recorded hash if there is one, else
    the object is read and hashed."""
    try:
        info = await source.stat(key)
        sha256 = info.sha256 if info.sha256 is not None else await source.checksum(key)
    except StorageError as exc:
        raise SideError("source", exc) from exc
    return SourceObject(info.size, sha256, info.content_type or DEFAULT_CONTENT_TYPE)


async def target_matches(target: StorageProvider, key: str, size: int, sha256: str) -> bool:
    """Whether the target already holds exactly these bytes. The recorded hash says it may;
    reading the bytes back proves it."""
    try:
        info = await target.stat(key)
    except ObjectNotFoundError:
        return False
    except StorageError as exc:
        raise SideError("target", exc) from exc
    if info.size != size or info.sha256 not in (None, sha256):
        return False
    try:
        return await target.checksum(key) == sha256
    except ObjectNotFoundError:
        return False
    except StorageError as exc:
        raise SideError("target", exc) from exc


async def transfer(
    source: StorageProvider,
    source_key: str,
    target: StorageProvider,
    target_key: str,
    described: SourceObject,
) -> Transferred:
    """Copy one object described by :func:`source_object` and verify it: what was read must
    hash to the described SHA-256, and so must what the target then holds. Raises
    ``SideError`` naming the side that failed."""
    stream = _HashingStream(source, source_key)
    try:
        written_info = await target.put(target_key, stream, content_type=described.content_type)
    except StorageError as exc:
        if stream.error is not None:
            raise SideError("source", stream.error) from exc
        raise SideError("target", exc) from exc
    except Exception as exc:
        # A target client that let the source's own error through unwrapped.
        if stream.error is not None:
            raise SideError("source", stream.error) from exc
        raise
    written = stream.digest.hexdigest()
    if written != described.sha256:
        # The source changed under us, or no longer holds what was recorded: never spread
        # that copy.
        await _discard(target, target_key)
        raise SideError("source", ChecksumMismatchError(source_key, described.sha256, written))
    if written_info.service_verified:
        # The service's own digest of what it stored matched the bytes sent, and those
        # hashed to the source's SHA-256: verified without reading the copy back.
        return Transferred(size=stream.size, sha256=written)
    try:
        stored = await target.checksum(target_key)
    except StorageError as exc:
        raise SideError("target", exc) from exc
    if stored != written:
        await _discard(target, target_key)
        raise SideError("target", ChecksumMismatchError(target_key, written, stored))
    return Transferred(size=stream.size, sha256=written)


async def _discard(target: StorageProvider, key: str) -> None:
    try:
        await target.delete(key)
    except StorageError as exc:
        raise SideError("target", exc) from exc
