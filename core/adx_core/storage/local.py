"""The local filesystem provider: a volume in production, ``.adx/storage`` in development.

Writes go to a temporary file beside the target and are renamed into place, so a reader
sees the old object or the new one. The SHA-256 and content type go into extended
attributes where the filesystem has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

from adx_core.storage.errors import (
    InvalidRangeError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
    UnsafeKeyError,
)
from adx_core.storage.keys import RESERVED_SEGMENT_PREFIX, validate_key, validate_prefix
from adx_core.storage.provider import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PART_SIZE,
    MARKER,
    ListPage,
    ObjectInfo,
    StorageProvider,
    check_page_size,
    check_range,
)

__all__ = ["MARKER", "LocalStorage", "UnsafeKeyError"]

_SHA_ATTR = "user.adx.sha256"
_TYPE_ATTR = "user.adx.content_type"

P = ParamSpec("P")
T = TypeVar("T")


def _translate(key: str, exc: OSError) -> StorageError:
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return ObjectNotFoundError(key)
    if isinstance(exc, PermissionError):
        return StorageAuthError(f"permission denied on the storage volume for {key!r}")
    return StorageUnavailableError(f"storage volume error for {key!r}: {exc.strerror or exc}")


async def _io(key: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as exc:
        raise _translate(key, exc) from None


def _get_attr(path: Path, name: str) -> str | None:
    try:
        return os.getxattr(path, name).decode()
    except OSError:
        return None


def _set_attrs(path: Path, sha256: str, content_type: str) -> None:
    # Not every filesystem has user xattrs (some tmpfs); the hash is then computed on demand.
    try:
        os.setxattr(path, _SHA_ATTR, sha256.encode())
        os.setxattr(path, _TYPE_ATTR, content_type.encode())
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
            raise


class LocalStorage(StorageProvider):
    name = "local"

    def __init__(self, root: Path, *, chunk_size: int = DEFAULT_PART_SIZE) -> None:
        self._root = root.resolve()
        self._chunk_size = chunk_size

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self._root / key).resolve()
        # validate_key already refuses '..'; a symlink inside the root could still point out.
        if path == self._root or self._root not in path.parents:
            raise UnsafeKeyError(f"key {key!r} leaves the storage root")
        return path

    async def ensure_container(self) -> None:
        await _io("", self._root.mkdir, parents=True, exist_ok=True)

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        path = self._path(key)
        partial = path.with_name(f"{RESERVED_SEGMENT_PREFIX}{uuid.uuid4().hex}")
        digest = hashlib.sha256()
        size = 0
        await _io(key, path.parent.mkdir, parents=True, exist_ok=True)
        handle: IO[bytes] = await _io(key, open, partial, "wb")
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await _io(key, handle.write, chunk)
            await _io(key, handle.flush)
            await _io(key, os.fsync, handle.fileno())
            await _io(key, handle.close)
            sha256 = digest.hexdigest()
            await _io(key, _set_attrs, partial, sha256, content_type)
            await _io(key, os.replace, partial, path)
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise
        return ObjectInfo(key=key, size=size, sha256=sha256, content_type=content_type)

    async def get(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._path(key)
        check_range(offset, length)
        handle: IO[bytes] = await _io(key, open, path, "rb")
        try:
            size = os.fstat(handle.fileno()).st_size
            if offset > size:
                raise InvalidRangeError(f"the range starts at {offset}, past the end ({size})")
            remaining = size - offset if length is None else min(length, size - offset)
            await _io(key, handle.seek, offset)
            while remaining > 0:
                chunk = await _io(key, handle.read, min(self._chunk_size, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> ObjectInfo:
        return await _io(key, self._stat, key, self._path(key))

    @staticmethod
    def _stat(key: str, path: Path) -> ObjectInfo:
        if not path.is_file():
            raise FileNotFoundError(key)
        return ObjectInfo(
            key=key,
            size=path.stat().st_size,
            sha256=_get_attr(path, _SHA_ATTR),
            content_type=_get_attr(path, _TYPE_ATTR) or DEFAULT_CONTENT_TYPE,
        )

    async def copy(self, source_key: str, target_key: str) -> ObjectInfo:
        source, target = self._path(source_key), self._path(target_key)
        await _io(source_key, self._copy, source, target)
        return await self.stat(target_key)

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        if not source.is_file():
            raise FileNotFoundError(str(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{RESERVED_SEGMENT_PREFIX}{uuid.uuid4().hex}")
        try:
            # copy2 carries the extended attributes (the recorded hash) with the bytes.
            shutil.copy2(source, partial)
            # On disk before it takes the target's name, as put does: a promotion deletes
            # the source right after the copy, and a crash must not lose both.
            with partial.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await _io(key, path.unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        removed = await super().delete_prefix(prefix)
        # Objects are gone; the empty folders they lived in go too.
        await _io(prefix, self._prune, self._root / prefix)
        return removed

    def _prune(self, folder: Path) -> None:
        if folder.resolve() == self._root or not folder.is_dir() or folder.is_symlink():
            return
        for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):  # not empty: someone wrote meanwhile
                    path.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()

    async def list(
        self, prefix: str, *, page_token: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> ListPage:
        validate_prefix(prefix)
        check_page_size(page_size)
        return await _io(prefix, self._list, prefix, page_token, page_size)

    def _list(self, prefix: str, after: str | None, page_size: int) -> ListPage:
        objects: list[ObjectInfo] = []
        for key, path in self._walk(prefix, after):
            if len(objects) == page_size:
                return ListPage(objects=objects, next_token=objects[-1].key)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # deleted while we listed
            objects.append(ObjectInfo(key=key, size=size, sha256=_get_attr(path, _SHA_ATTR)))
        return ListPage(objects=objects, next_token=None)

    def _walk(self, prefix: str, after: str | None) -> Iterator[tuple[str, Path]]:
        """Keys under ``prefix`` greater than ``after``, in the byte order S3 lists them.

        The walk starts at the deepest folder the prefix names and skips whole folders that
        sort before ``after``, so a page costs what it returns, not the size of the tree.
        """
        folder, _, _ = prefix.rpartition("/")
        start = self._root / folder if folder else self._root
        if not start.resolve().is_relative_to(self._root) or not start.is_dir():
            return
        yield from self._walk_dir(start, f"{folder}/" if folder else "", prefix, after)

    def _walk_dir(
        self, directory: Path, base: str, prefix: str, after: str | None
    ) -> Iterator[tuple[str, Path]]:
        entries: list[tuple[str, Path, bool]] = []
        with os.scandir(directory) as scan:
            for entry in scan:
                if entry.name.startswith(RESERVED_SEGMENT_PREFIX) or entry.is_symlink():
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                # A folder's keys all start with "name/", so it sorts as "name/".
                entries.append(
                    (base + entry.name + ("/" if is_dir else ""), Path(entry.path), is_dir)
                )
        # Code-point order of str is the byte order of UTF-8, the order S3 lists in.
        entries.sort(key=lambda item: item[0])
        for key, path, is_dir in entries:
            if is_dir:
                # Skip a folder that neither overlaps the prefix nor holds keys after `after`.
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if after is not None and key < after and not after.startswith(key):
                    continue
                yield from self._walk_dir(path, key, prefix, after)
            elif key.startswith(prefix) and (after is None or key > after):
                yield key, path
