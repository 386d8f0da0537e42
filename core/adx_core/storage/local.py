"""The local filesystem provider: a volume in production, ``.adx/storage`` in development."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from adx_core.storage.provider import PrefixUsage

MARKER = ".adx-prefix"


class UnsafeKeyError(ValueError):
    pass


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        # Keys are built from validated ids; this is the second line of defence.
        if path != self._root and self._root not in path.parents:
            raise UnsafeKeyError(f"key {key!r} leaves the storage root")
        return path

    async def ensure_prefix(self, prefix: str) -> bool:
        return await asyncio.to_thread(self._ensure_prefix, self._path(prefix))

    @staticmethod
    def _ensure_prefix(path: Path) -> bool:
        marker = path / MARKER
        if marker.exists():
            return False
        path.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return True

    async def prefix_exists(self, prefix: str) -> bool:
        return await asyncio.to_thread((self._path(prefix) / MARKER).exists)

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, self._path(prefix))

    def _delete_prefix(self, path: Path) -> int:
        if path == self._root:
            raise UnsafeKeyError("refusing to delete the storage root")
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file() and p.name != MARKER)
        shutil.rmtree(path)
        return count

    async def prefix_usage(self, prefix: str) -> PrefixUsage:
        return await asyncio.to_thread(self._prefix_usage, self._path(prefix))

    @staticmethod
    def _prefix_usage(path: Path) -> PrefixUsage:
        objects = size = 0
        if path.is_dir():
            for p in path.rglob("*"):
                # The marker is ours, not the tenant's; a symlink could point anywhere.
                if p.is_file() and not p.is_symlink() and p.name != MARKER:
                    objects += 1
                    size += p.stat().st_size
        return PrefixUsage(objects=objects, bytes=size)

    async def copy_prefix(self, source: str, target: str) -> int:
        """Copy every object under ``source`` to the same relative key under ``target``;
        the number copied. Copying again overwrites with the same content."""
        return await asyncio.to_thread(self._copy_prefix, self._path(source), self._path(target))

    @staticmethod
    def _copy_prefix(source: Path, target: Path) -> int:
        if not source.exists():
            return 0
        copied = 0
        for path in source.rglob("*"):
            if path.is_file() and path.name != MARKER:
                destination = target / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
                copied += 1
        return copied

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically: a temporary file, then a rename."""
        await asyncio.to_thread(self._put_bytes, self._path(key), data)

    @staticmethod
    def _put_bytes(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)
