"""Decompression-bomb checks for ZIP, gzip and tar archives, nested ones included.

Nothing here trusts the sizes an archive declares: every member is really decompressed,
in chunks, into nothing, and the bytes that come out are counted against the limits as
they come. Declared sizes can only make a check fail sooner. A nested ZIP needs random
access, so it is spooled (memory, then a temporary file) under the same byte budget;
gzip and tar are read as streams. Memory stays at a few chunks whatever the archive says.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

from .limits import InspectionLimits, RejectedFile, RejectReason

ArchiveFormat = Literal["zip", "gzip", "tar"]

_CHUNK = 64 * 1024
# Enough to see any of the signatures: tar's "ustar" sits at offset 257.
_PEEK = 512
# Small outputs are not judged by their ratio: a short text compresses 200:1 honestly.
_RATIO_FLOOR = 1024 * 1024
# A nested ZIP larger than this is spooled to a temporary file rather than memory.
_SPOOL_IN_MEMORY = 1024 * 1024
# bzip2 and LZMA members are refused: zipfile hands them whole compressed blocks, and a
# few kilobytes of bzip2 can expand to hundreds of megabytes in one call.
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_TAR_METADATA = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)
_TAR_FILES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER = 46
# Parsing errors of hostile archives; RejectedFile and real I/O errors pass through.
_CORRUPT = (
    zipfile.BadZipFile,
    gzip.BadGzipFile,
    tarfile.HeaderError,
    zlib.error,
    EOFError,
    struct.error,
    NotImplementedError,
    ValueError,
)


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class ArchiveSummary:
    """What a passed archive holds."""

    format: ArchiveFormat
    # Files and directories of ZIP and tar archives, nested ones included.
    entries: int
    # Bytes produced by decompression at every level.
    decompressed_bytes: int
    # 1 when no archive is inside; 2 when one is inside the upload, and so on.
    depth: int


def _corrupt(what: str) -> RejectedFile:
    return RejectedFile(RejectReason.CORRUPT, f"the archive is damaged: {what}")


def archive_format(head: bytes) -> ArchiveFormat | None:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _read_up_to(stream: _Readable, size: int) -> bytes:
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        part = stream.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _drain(stream: _Readable) -> None:
    while stream.read(_CHUNK):
        pass


class _Prefixed:
    """A stream with its already-read head put back in front."""

    def __init__(self, head: bytes, rest: _Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int, /) -> bytes:
        if self._head:
            part, self._head = self._head[:size], self._head[size:]
            return part
        return self._rest.read(size)

    def seek(self, offset: int, /) -> int:
        # GzipFile wants the method but only calls it to rewind, which we never do.
        raise io.UnsupportedOperation("seek")


class _Bounded:
    """The next ``size`` bytes of a stream: one tar member's data."""

    def __init__(self, stream: _Readable, size: int) -> None:
        self._stream = stream
        self.left = size

    def read(self, size: int, /) -> bytes:
        if self.left <= 0:
            return b""
        part = self._stream.read(min(size, self.left, _CHUNK))
        if not part:
            raise _corrupt("a tar member is cut short")
        self.left -= len(part)
        return part


class _Scan:
    """One archive check: the budget shared by every level of nesting."""

    def __init__(self, limits: InspectionLimits, source_size: int) -> None:
        self.limits = limits
        self.ratio_budget = max(limits.archive_max_ratio * source_size, _RATIO_FLOOR)
        self.entries = 0
        self.produced = 0
        self.depth = 1

    def count_entries(self, count: int) -> None:
        self.entries += count
        if self.entries > self.limits.archive_max_entries:
            raise RejectedFile(
                RejectReason.ARCHIVE_ENTRIES,
                f"the archive holds more than {self.limits.archive_max_entries:,} entries",
            )

    def charge(self, size: int) -> None:
        self.produced += size
        self._check_total(self.produced)
        if self.produced > self.ratio_budget:
            raise self._ratio_error()

    def _check_total(self, total: int) -> None:
        if total > self.limits.archive_max_bytes:
            raise RejectedFile(
                RejectReason.ARCHIVE_TOO_LARGE,
                f"the archive unpacks to more than {self.limits.archive_max_bytes:,} bytes",
            )

    def _ratio_error(self) -> RejectedFile:
        return RejectedFile(
            RejectReason.ARCHIVE_RATIO,
            f"the archive unpacks to more than {self.limits.archive_max_ratio} times its size",
        )

    def enter(self, depth: int) -> None:
        if depth > self.limits.archive_max_depth:
            raise RejectedFile(
                RejectReason.ARCHIVE_TOO_DEEP,
                f"the archive nests archives more than {self.limits.archive_max_depth} deep",
            )
        self.depth = max(self.depth, depth)

    # Streams of content, whatever they turn out to hold.

    def stream(self, stream: _Readable, depth: int, *, tar_is_nested: bool = True) -> None:
        head = _read_up_to(stream, _PEEK)
        found = archive_format(head)
        if found is None:
            _drain(stream)
            return
        # A tar inside gzip is one .tar.gz archive, not an archive in an archive.
        inner = depth if found == "tar" and not tar_is_nested else depth + 1
        self.enter(inner)
        whole = _Prefixed(head, stream)
        if found == "zip":
            with _spooled(whole) as spool:
                self.zip(spool, inner)
        elif found == "gzip":
            self.gzip(whole, inner)
        else:
            self.tar(whole, inner)

    def zip(self, handle: IO[bytes], depth: int) -> None:
        size = handle.seek(0, os.SEEK_END)
        left = self.limits.archive_max_entries - self.entries
        self.count_entries(count_zip_entries(handle, size, stop_after=left))
        handle.seek(0)
        with zipfile.ZipFile(handle) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            self._check_total(self.produced + sum(info.file_size for info in members))
            for info in members:
                if info.flag_bits & 0x1:
                    raise RejectedFile(
                        RejectReason.ARCHIVE_ENCRYPTED,
                        "encrypted archives cannot be checked and are not accepted",
                    )
                if info.compress_type not in _ZIP_METHODS:
                    raise RejectedFile(
                        RejectReason.ARCHIVE_UNSUPPORTED,
                        "the archive uses a compression method other than deflate",
                    )
                with archive.open(info) as member:
                    self.stream(_Metered(member, self, min(info.compress_size, size)), depth)

    def gzip(self, stream: _Prefixed | IO[bytes], depth: int) -> None:
        with gzip.GzipFile(fileobj=stream, mode="rb") as unpacked:
            self.stream(_Metered(unpacked, self, None), depth, tar_is_nested=False)

    def tar(self, stream: _Readable, depth: int) -> None:
        while True:
            block = _read_up_to(stream, tarfile.BLOCKSIZE)
            # One zero block ends the archive; what follows is padding.
            if not block or block == tarfile.NUL * tarfile.BLOCKSIZE:
                return
            if len(block) < tarfile.BLOCKSIZE:
                raise _corrupt("a tar header is cut short")
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            if info.type not in _TAR_METADATA:
                self.count_entries(1)
            member = _Bounded(stream, info.size)
            if info.type in _TAR_FILES:
                self.stream(member, depth)
            _drain(member)
            padding = -info.size % tarfile.BLOCKSIZE
            if len(_read_up_to(stream, padding)) != padding:
                raise _corrupt("a tar member is cut short")


class _Metered:
    """Decompressed output, charged to the scan as it is read, in bounded chunks."""

    def __init__(self, stream: _Readable, scan: _Scan, compressed: int | None) -> None:
        self._stream = stream
        self._scan = scan
        self._produced = 0
        self._budget = (
            None
            if compressed is None
            else max(scan.limits.archive_max_ratio * compressed, _RATIO_FLOOR)
        )

    def read(self, size: int, /) -> bytes:
        part = self._stream.read(max(1, min(size, _CHUNK)))
        self._produced += len(part)
        self._scan.charge(len(part))
        if self._budget is not None and self._produced > self._budget:
            raise self._scan._ratio_error()
        return part


@contextmanager
def _spooled(stream: _Readable) -> Iterator[IO[bytes]]:
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        while part := stream.read(_CHUNK):
            spool.write(part)
        spool.seek(0)
        yield spool


def count_zip_entries(handle: IO[bytes], size: int, *, stop_after: int) -> int:
    """Entries in the central directory, counted without building it in memory.

    zipfile keeps an object per entry, so an archive of a few megabytes of empty
    entries would take gigabytes; counting stops one past ``stop_after``.
    """
    tail_size = min(size, _EOCD.size + 0xFFFF)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or found + _EOCD.size > len(tail):
        raise _corrupt("no end of central directory")
    end_at = size - tail_size + found
    _, _, _, _, _, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, found)
    cd_end = end_at
    if 0xFFFFFFFF in (cd_size, cd_offset) and end_at >= _ZIP64_LOCATOR.size:
        handle.seek(end_at - _ZIP64_LOCATOR.size)
        locator = handle.read(_ZIP64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            cd_end = end_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
            if cd_end < 0:
                raise _corrupt("a bad ZIP64 record")
            handle.seek(cd_end)
            record = _ZIP64_EOCD.unpack(handle.read(_ZIP64_EOCD.size))
            cd_size = record[8]
    # Measured back from the end record, as zipfile does, so prepended data is allowed.
    start = cd_end - cd_size
    if start < 0:
        raise _corrupt("a central directory larger than the file")
    handle.seek(start)
    count = consumed = 0
    while consumed < cd_size and count <= stop_after:
        header = handle.read(_CENTRAL_HEADER)
        if len(header) < _CENTRAL_HEADER or header[:4] != b"PK\x01\x02":
            raise _corrupt("a bad central directory entry")
        name, extra, comment = struct.unpack_from("<3H", header, 28)
        handle.seek(name + extra + comment, os.SEEK_CUR)
        consumed += _CENTRAL_HEADER + name + extra + comment
        count += 1
    return count


def check_archive(path: str | os.PathLike[str], limits: InspectionLimits) -> ArchiveSummary | None:
    """Check a ZIP, gzip or tar file against the limits; None when it is no archive.

    Raises RejectedFile with ``archive_entries``, ``archive_too_large``,
    ``archive_ratio``, ``archive_too_deep``, ``archive_encrypted``,
    ``archive_unsupported`` or ``corrupt``.
    """
    source = Path(path)
    with source.open("rb") as handle:
        found = archive_format(handle.read(_PEEK))
        if found is None:
            return None
        handle.seek(0)
        scan = _Scan(limits, os.fstat(handle.fileno()).st_size)
        try:
            if found == "zip":
                scan.zip(handle, 1)
            elif found == "gzip":
                scan.gzip(handle, 1)
            else:
                scan.tar(handle, 1)
        except _CORRUPT as error:
            kind = type(error)
            raise _corrupt(f"{kind.__module__}.{kind.__qualname__}") from None
    return ArchiveSummary(found, scan.entries, scan.produced, scan.depth)
