"""The storage provider interface that activities use. Every method is idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PrefixUsage:
    objects: int
    bytes: int


class StorageProvider(Protocol):
    name: str

    async def ensure_prefix(self, prefix: str) -> bool:
        """Create the prefix (a folder, or a marker object). ``False`` if it already existed."""
        ...

    async def prefix_exists(self, prefix: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove everything under the prefix; the number of objects removed (0 if absent)."""
        ...

    async def prefix_usage(self, prefix: str) -> PrefixUsage:
        """The objects under the prefix and their total size; zero for an absent prefix."""
        ...

    async def copy_prefix(self, source: str, target: str) -> int:
        """Copy everything under ``source`` to ``target``; the number of objects copied."""
        ...

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Write one small object (an export manifest); replaces an existing one."""
        ...
