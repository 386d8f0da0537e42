"""Our asyncio client of clamd's INSTREAM protocol (ClamAV's daemon, see clamd(8)).

The protocol: connect (TCP or a Unix socket), send ``zINSTREAM\\0`` (the ``z`` prefix
means NUL-terminated command and reply), then the file as chunks, each a 4-byte
big-endian length followed by that many bytes; a zero-length chunk ends the stream.
clamd answers one line: ``stream: OK``, ``stream: <signature> FOUND`` or
``<message> ERROR``. Each scan opens its own connection; nothing is pooled or shared.

clamd counts the bytes it receives. At its StreamMaxLength it answers ``INSTREAM size
limit exceeded. ERROR`` and closes the connection while we may still be sending. So the
reply is read concurrently with the sending: when a send then fails with a reset or a
broken pipe, we report what clamd already answered (the limit) rather than "unavailable",
and we stop sending as soon as an early answer arrives. We use non-blocking sockets
directly (not asyncio streams) because a stream transport that fails a write stops
reading at once, and the reply that was already in the socket would be lost.

We do not use the ``aioclamd`` package: it reads the file from a synchronous file object
in threads and does not read clamd's reply while it sends, so clamd's early answer turns
into a connection error.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

from adx_core.scanning.base import (
    ByteBudget,
    ScanError,
    ScanLimitExceededError,
    Scanner,
    ScannerUnavailableError,
    ScanVerdict,
    checked_limit,
)

ClamdEndpoint = tuple[str, int] | str
"""(host, port) for TCP, or the path of clamd's Unix socket (``Settings.clamd_endpoint``)."""

DEFAULT_CHUNK_SIZE = 256 * 1024

_INSTREAM = b"zINSTREAM\0"
_PING = b"zPING\0"
_END_OF_STREAM = struct.pack(">I", 0)
_CHUNK_HEADER = struct.Struct(">I")
_MAX_REPLY_BYTES = 64 * 1024
# clamd's replies are one short line; a larger read only wastes memory.
_RECV_SIZE = 4096
# After a send failed, how long the reply clamd may already have sent gets to arrive.
_REPLY_GRACE_SECONDS = 5.0
# clamd scans what it was sent only after the last byte, so the wait for its verdict grows
# with the file: ``timeout`` plus a second per this many bytes. A conservative rate for a
# full signature database; a hung clamd is still found, just later for a larger file.
VERDICT_BYTES_PER_SECOND = 8 * 1024 * 1024

# What clamd reports, with AlertExceedsMax yes, for a file whose scan hit one of its
# limits (MaxFileSize, MaxScanSize, MaxRecursion, MaxFiles, MaxScanTime...): not scanned
# whole, so never clean.
LIMIT_HEURISTIC_PREFIX = "Heuristics.Limits.Exceeded"
_SIZE_LIMIT_ERROR = "size limit exceeded"
_STREAM_PREFIX = "stream: "
_SCANNER_NAME = "clamd"


def interpret_reply(reply: str, *, scanned_bytes: int) -> ScanVerdict:
    """Turn clamd's answer to INSTREAM (without its NUL) into a verdict or an error."""
    text = reply.strip()
    if text == f"{_STREAM_PREFIX}OK":
        return ScanVerdict(
            clean=True, signature=None, scanned_bytes=scanned_bytes, scanner=_SCANNER_NAME
        )
    if text.startswith(_STREAM_PREFIX) and text.endswith(" FOUND"):
        signature = text[len(_STREAM_PREFIX) : -len(" FOUND")].strip()
        if not signature:
            raise ScanError(f"clamd reported a find without a name: {text!r}")
        if signature.startswith(LIMIT_HEURISTIC_PREFIX):
            raise ScanLimitExceededError(f"clamd could not scan the whole file: {signature}")
        return ScanVerdict(
            clean=False, signature=signature, scanned_bytes=scanned_bytes, scanner=_SCANNER_NAME
        )
    if text.endswith("ERROR"):
        if _SIZE_LIMIT_ERROR in text:
            raise ScanLimitExceededError(f"the stream is larger than clamd accepts: {text}")
        # Out of memory, no room for its temporary file, a read timeout: clamd's trouble,
        # not the file's; another attempt may succeed.
        raise ScannerUnavailableError(f"clamd failed to scan: {text}")
    # UNKNOWN COMMAND or anything else: a protocol mismatch that a retry will not fix.
    raise ScanError(f"clamd answered something unexpected: {text!r}")


class ClamdScanner(Scanner):
    """Scans streams with clamd over TCP or a Unix socket.

    ``timeout`` bounds the connect and each write; the wait for the verdict after the last
    byte gets ``timeout`` plus a second per ``VERDICT_BYTES_PER_SECOND`` sent.
    ``max_bytes`` is our own limit: a stream longer than that is refused with
    ScanLimitExceededError before any byte past it is sent; keep it at or below clamd's
    StreamMaxLength. Big chunks from the caller are sent in pieces of ``chunk_size``.
    """

    name: ClassVar[str] = _SCANNER_NAME

    def __init__(
        self,
        endpoint: ClamdEndpoint,
        *,
        timeout: float,
        max_bytes: int,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.endpoint = endpoint
        self._timeout = timeout
        self._max_bytes = checked_limit(max_bytes)
        self._chunk_size = chunk_size

    @property
    def address(self) -> str:
        """The endpoint as ADX_CLAMD_ADDRESS writes it, for messages."""
        if isinstance(self.endpoint, str):
            return f"unix:{self.endpoint}"
        host, port = self.endpoint
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanVerdict:
        sock = await self._connect()
        try:
            return await self._scan_on(sock, chunks)
        finally:
            sock.close()

    async def ping(self) -> None:
        sock = await self._connect()
        try:
            await self._send(sock, _PING)
            async with asyncio.timeout(self._timeout):
                reply = await _read_reply(sock)
        except TimeoutError as exc:
            raise ScannerUnavailableError(f"clamd at {self.address} did not answer PING") from exc
        except _SendFailed as exc:
            raise ScannerUnavailableError(f"clamd at {self.address} failed PING: {exc}") from exc
        finally:
            sock.close()
        if reply.strip() != "PONG":
            raise ScannerUnavailableError(f"clamd at {self.address} answered PING with {reply!r}")

    async def close(self) -> None:
        """Nothing to release: each scan opens and closes its own connection."""

    # -- one scan ---------------------------------------------------------------------------

    async def _scan_on(self, sock: socket.socket, chunks: AsyncIterator[bytes]) -> ScanVerdict:
        budget = ByteBudget(self._max_bytes)
        reply = asyncio.create_task(_read_reply(sock))
        sender = asyncio.create_task(self._send_stream(sock, chunks, budget))
        try:
            await asyncio.wait({reply, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender.done():
                text = await self._reply_after_sending(sender, reply, budget.used)
            else:
                # clamd answered before the end of the stream: its size limit, an error, or
                # it went away. Whatever it said stands; the rest is not sent.
                text = reply.result()
            verdict = interpret_reply(text, scanned_bytes=budget.used)
            sent_whole = sender.done() and sender.exception() is None
            if verdict.clean and not sent_whole:
                # clamd never says OK to part of a stream; if it ever did, it would not be
                # about the whole file.
                raise ScannerUnavailableError(
                    f"clamd at {self.address} answered OK before the whole stream was sent"
                )
            return verdict
        finally:
            for task in (sender, reply):
                task.cancel()
            await asyncio.gather(sender, reply, return_exceptions=True)

    async def _reply_after_sending(
        self, sender: asyncio.Task[None], reply: asyncio.Task[str], sent: int
    ) -> str:
        failure = sender.exception()
        if failure is None:
            patience = self._timeout + sent / VERDICT_BYTES_PER_SECOND
            try:
                async with asyncio.timeout(patience):
                    return await reply
            except TimeoutError as exc:
                raise ScannerUnavailableError(
                    f"clamd at {self.address} gave no verdict within {patience:.0f}s"
                ) from exc
        if not isinstance(failure, _SendFailed):
            # Our own limit (ScanLimitExceededError) or the caller's stream failing.
            raise failure
        if isinstance(failure.cause, TimeoutError):
            if reply.done():
                return reply.result()
            raise ScannerUnavailableError(
                f"clamd at {self.address} stopped reading the stream for {self._timeout:g}s"
            ) from failure.cause
        # A reset or broken pipe: clamd may have answered (its limit) and closed first.
        try:
            async with asyncio.timeout(min(self._timeout, _REPLY_GRACE_SECONDS)):
                return await reply
        except (TimeoutError, ScanError):
            raise ScannerUnavailableError(
                f"clamd at {self.address} dropped the connection: {failure.cause}"
            ) from failure.cause

    async def _send_stream(
        self, sock: socket.socket, chunks: AsyncIterator[bytes], budget: ByteBudget
    ) -> None:
        await self._send(sock, _INSTREAM)
        async for chunk in chunks:
            for piece in _pieces(chunk, self._chunk_size):
                budget.take(len(piece))
                await self._send(sock, _CHUNK_HEADER.pack(len(piece)) + piece)
        await self._send(sock, _END_OF_STREAM)

    # -- the socket -----------------------------------------------------------------------

    async def _connect(self) -> socket.socket:
        try:
            async with asyncio.timeout(self._timeout):
                return await _open_socket(self.endpoint)
        except OSError as exc:  # refused, no such socket file, unresolvable, or timed out
            raise ScannerUnavailableError(f"cannot reach clamd at {self.address}: {exc}") from exc

    async def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.get_running_loop().sock_sendall(sock, data)
        except OSError as exc:  # TimeoutError is one too
            raise _SendFailed(exc) from exc


class _SendFailed(Exception):
    """A write to clamd failed; kept apart from errors of the caller's own stream."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _pieces(chunk: bytes, size: int) -> Iterator[bytes]:
    # Never yields an empty piece: a zero-length chunk would end the stream early.
    view = memoryview(chunk)
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])


async def _read_reply(sock: socket.socket) -> str:
    """Read up to clamd's NUL (or the end of the connection); runs while the stream is sent."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    while b"\0" not in received:
        try:
            data = await loop.sock_recv(sock, _RECV_SIZE)
        except OSError as exc:
            raise ScannerUnavailableError(f"the connection to clamd failed: {exc}") from exc
        if not data:
            break
        received += data
        if len(received) > _MAX_REPLY_BYTES:
            raise ScanError("clamd's reply is too long to be one")
    if not received:
        raise ScannerUnavailableError("clamd closed the connection without an answer")
    return received.partition(b"\0")[0].decode("utf-8", errors="replace")


async def _open_socket(endpoint: ClamdEndpoint) -> socket.socket:
    loop = asyncio.get_running_loop()
    if isinstance(endpoint, str):
        return await _connected(socket.AF_UNIX, 0, endpoint)
    host, port = endpoint
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    failure: OSError = OSError(f"{host} has no address")
    for family, _, proto, _, address in infos:
        try:
            return await _connected(family, proto, address)
        except OSError as exc:
            failure = exc
    raise failure


async def _connected(family: int, proto: int, address: str | tuple[object, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        # Also on cancellation (the connect timeout): never leak the descriptor.
        sock.close()
        raise
    return sock
