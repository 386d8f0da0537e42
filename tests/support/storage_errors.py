"""What the providers' error tests share: one call of each kind, and the checks that a
failure came at once (no hidden retry) and shows no secret."""

from __future__ import annotations

import contextlib
import socket
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from adx_core.storage import StorageError, StorageProvider

# Fast enough that no client-side retry with backoff could have happened.
QUICK = 3.0


async def drain(chunks: AsyncIterator[bytes]) -> None:
    async for _ in chunks:
        pass


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def calls(store: StorageProvider, prefix: str) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of each kind, each its own request to the service."""
    return {
        "put": lambda: store.put(prefix + "a", one_chunk(b"data")),
        "get": lambda: drain(store.get(prefix + "a")),
        "stat": lambda: store.stat(prefix + "a"),
        "copy": lambda: store.copy(prefix + "a", prefix + "b"),
        "delete": lambda: store.delete(prefix + "a"),
        "list": lambda: store.list(prefix),
        "ensure_container": store.ensure_container,
    }


async def raises_quickly(
    expected: type[StorageError], call: Callable[[], Awaitable[object]]
) -> StorageError:
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        await call()
    elapsed = time.monotonic() - started
    assert elapsed < QUICK, f"took {elapsed:.1f} s: a hidden retry?"
    return caught.value


def shows_nothing_of(secret: str, exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert secret not in text
    assert secret not in repr(exc)


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]
