"""The local filesystem provider: a volume in production, ``.adx/storage`` in development."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

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
