"""What every scanner backend shares: the verdict, the errors and the interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self


@dataclass(frozen=True)
class ScanVerdict:
    """The answer for one stream: clean, or the name of what was found in it."""

    clean: bool
    signature: str | None
    scanned_bytes: int
    scanner: str


class ScanError(Exception):
    """The stream could not be judged; it must never be treated as clean."""


class ScannerUnavailableError(ScanError):
    """The scanner could not be reached or failed for now: the caller retries."""


class ScanLimitExceededError(ScanError):
    """The stream is larger than the scanner may look at, so it was not fully scanned.

    Retrying cannot help: the file must be rejected, never passed as clean.
    """


class Scanner(ABC):
    """A virus scanner that judges one stream of bytes at a time."""

    name: ClassVar[str]

    @abstractmethod
    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanVerdict:
        """Scan everything ``chunks`` yields, as one file."""

    @abstractmethod
    async def ping(self) -> None:
        """Return when the scanner answers; ScannerUnavailableError otherwise."""

    @abstractmethod
    async def close(self) -> None:
        """Release what the scanner holds. Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class ByteBudget:
    """Counts the bytes of a stream and refuses any byte past ``max_bytes``.

    ``take`` is called before a chunk is passed on, so a scanner never sends or looks at
    more than the limit.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    def take(self, size: int) -> None:
        if self.used + size > self.max_bytes:
            raise ScanLimitExceededError(
                f"the stream is larger than the scan limit of {self.max_bytes} bytes"
            )
        self.used += size


def checked_limit(max_bytes: int) -> int:
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    return max_bytes
