"""The storage provider interface that activities use. Every method is idempotent."""

from __future__ import annotations

from typing import Protocol


class StorageProvider(Protocol):
    name: str

    async def ensure_prefix(self, prefix: str) -> bool:
        """Create the prefix (a folder, or a marker object). ``False`` if it already existed."""
        ...

    async def prefix_exists(self, prefix: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove everything under the prefix; the number of objects removed (0 if absent)."""
        ...
