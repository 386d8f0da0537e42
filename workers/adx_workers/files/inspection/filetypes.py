"""What a file really is, and whether the upload may keep the type it claims.

``sniff`` reads the head and the tail of the file (never the whole of it) and asks
puremagic, then recognises text itself. ``check_type`` compares that with the declared
Content-Type and the file name's extension and decides the type to record.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
from collections.abc import Collection, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

import puremagic

from .archives import ArchiveFormat, archive_format
from .limits import RejectedFile, RejectReason
from .text import guess_text

Kind = Literal["image", "pdf", "text", "archive", "other"]

OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain"
ZIP = "application/zip"
GZIP = "application/gzip"
TAR = "application/x-tar"
PDF = "application/pdf"
_ARCHIVE_TYPES: dict[ArchiveFormat, str] = {"zip": ZIP, "gzip": GZIP, "tar": TAR}

# The head covers puremagic's longest header signature (36,870 bytes) and the text
# sample; the tail covers its footer signatures (516 bytes).
HEAD_BYTES = 64 * 1024
_TAIL_BYTES = 1024

# Formats Pillow decodes for us, by content type. Only these are ever opened as images:
# other plugins (EPS through Ghostscript, for one) must never see an upload.
IMAGE_FORMATS: dict[str, str] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/avif": "AVIF",
}
# Phones write multi-picture JPEGs, which Pillow opens as MPO.
PILLOW_FORMATS: tuple[str, ...] = (*IMAGE_FORMATS.values(), "MPO")

_ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/x-dib": "image/bmp",
    "image/x-icon": "image/vnd.microsoft.icon",
    "application/x-pdf": PDF,
    "application/x-gzip": GZIP,
    "application/x-zip-compressed": ZIP,
    "application/x-zip": ZIP,
    "text/x-markdown": "text/markdown",
    "text/json": "application/json",
    "text/xml": "application/xml",
    "application/x-yaml": "application/yaml",
    "text/yaml": "application/yaml",
    "text/x-yaml": "application/yaml",
}
_TEXTUAL_APPLICATION = frozenset(
    {
        "application/json",
        "application/xml",
        "application/yaml",
        "application/x-ndjson",
        "application/javascript",
        "application/x-sh",
        "application/x-shellscript",
        "application/sql",
        "image/svg+xml",
    }
)
_GZIP_FAMILY = frozenset({GZIP, "application/x-tgz", "application/x-compressed-tar"})


def _puremagic_zip_family() -> dict[str, str]:
    """Extension -> type of every format puremagic knows to be a ZIP container."""
    found: dict[str, str] = {}
    for row in puremagic.magic_header_array:
        # Some rows of puremagic's table spell the signature as text ("PK\\003\\004").
        if row.byte_match.startswith(b"PK\x03\x04") and row.mime_type:
            found.setdefault(str(row.extension).lower(), normalise(row.mime_type))
    return found


def normalise(content_type: str) -> str:
    """``Image/JPG; charset=x`` -> ``image/jpeg``: parameters dropped, aliases resolved."""
    base = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


_ZIP_BY_EXTENSION = _puremagic_zip_family()
_ZIP_FAMILY = frozenset({ZIP, "application/epub+zip", *_ZIP_BY_EXTENSION.values()})
_NAME_TYPES: dict[str, str] = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".log": TEXT_PLAIN,
    ".gz": GZIP,
    ".tgz": GZIP,
    ".tar": TAR,
    **{ext: kind for ext, kind in _ZIP_BY_EXTENSION.items() if ext.startswith(".")},
}
# The built-in table only: the system's mime.types would make results host-dependent.
_MIMETYPES = mimetypes.MimeTypes()
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def is_textual(content_type: str) -> bool:
    kind = normalise(content_type)
    return (
        kind.startswith("text/") or kind in _TEXTUAL_APPLICATION or kind.endswith(("+json", "+xml"))
    )


def kind_of(content_type: str) -> Kind:
    """What the processing steps can do with a file of this (recorded) type."""
    kind = normalise(content_type)
    if kind in IMAGE_FORMATS:
        return "image"
    if kind == PDF:
        return "pdf"
    if is_textual(kind):
        return "text"
    if kind in _ZIP_FAMILY or kind in _GZIP_FAMILY or kind == TAR:
        return "archive"
    return "other"


def type_from_name(name: str) -> str | None:
    """The type a file name's extension stands for, or None when it says nothing."""
    base = PurePosixPath(name.replace("\\", "/")).name.lower()
    suffixes = PurePosixPath(base).suffixes
    if not suffixes:
        return None
    if suffixes[-1] in _NAME_TYPES:
        return _NAME_TYPES[suffixes[-1]]
    guessed, encoding = _MIMETYPES.guess_type(base, strict=False)
    if encoding == "gzip":
        return GZIP
    if encoding is not None or guessed is None:
        return None
    kind = normalise(guessed)
    return None if kind == OCTET_STREAM else kind


def _magic(sample: bytes) -> list[tuple[str, bytes, float]]:
    try:
        matches = puremagic.magic_string(sample)
    except (puremagic.PureError, ValueError):
        return []
    return [
        (normalise(match.mime_type), bytes(match.byte_match), float(match.confidence))
        for match in matches
        if match.mime_type
    ]


def _printable(signature: bytes) -> bool:
    return all(0x20 <= byte < 0x7F for byte in signature)


def _text_type(head: bytes, complete: bool) -> str:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if complete and stripped[:1] in (b"{", b"["):
        try:
            json.loads(head.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            return TEXT_PLAIN
        return "application/json"
    return TEXT_PLAIN


def sniff(path: str | os.PathLike[str], hints: Collection[str] = ()) -> str | None:
    """The real content type from the bytes, or None when they say nothing we know.

    Containers come first (ZIP, gzip, tar), then puremagic's signatures of four bytes or
    more, then text, then puremagic's short (weak) signatures, but only an image format
    (validation then decodes it, so a false match cannot pass as an image) or one that a
    hint (the declared type, the type of the file name) names: one to three bytes match
    random data far too often (about 1 in 250 random files looks like JSON or MS Write
    to them), so on their own they say nothing. A file that is text but
    starts with a textual signature (``#!``, ``<?xml``) is text unless it is a PDF, which
    can be all ASCII. An empty file is empty text. Given only the first ``HEAD_BYTES`` of
    a longer file, the answer is the same (bar the rare types known by their last bytes).
    """
    with Path(path).open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        size = os.fstat(handle.fileno()).st_size
        tail = b""
        if size > len(head):
            handle.seek(max(len(head), size - _TAIL_BYTES))
            tail = handle.read(_TAIL_BYTES)
    if not head:
        return TEXT_PLAIN
    container = archive_format(head)
    if container is not None:
        return _ARCHIVE_TYPES[container]
    # A file of HEAD_BYTES or more may be the head of a longer one (activities sniff the
    # first HEAD_BYTES of an object): a character cut at its end is then not an error.
    complete = size < HEAD_BYTES
    matches = _magic(head + tail)
    text = guess_text(head, complete=complete)
    strong = next((match for match in matches if match[2] >= 0.4), None)
    if strong is not None:
        kind, signature, _ = strong
        if text is None or kind == PDF or not _printable(signature):
            return kind
    if text is not None:
        return _text_type(head, complete)
    wanted = {normalise(hint) for hint in hints if hint}
    return next((kind for kind, _, _ in matches if kind in wanted or kind in IMAGE_FORMATS), None)


def _compatible(claim: str, detected: str) -> bool:
    if claim in (detected, OCTET_STREAM):
        return True
    if is_textual(claim) and is_textual(detected):
        return True
    if detected == ZIP and claim in _ZIP_FAMILY:
        return True
    if detected == GZIP and claim in _GZIP_FAMILY:
        return True
    # A WebP saved as .jpg is common and harmless: the detected type is what is recorded.
    return kind_of(claim) == "image" and kind_of(detected) == "image"


def _refine(detected: str, claims: Sequence[str]) -> str:
    """The most specific of the claims that agrees with the detected type."""
    if is_textual(detected):
        specific = [c for c in (*claims, detected) if is_textual(c) and c != TEXT_PLAIN]
        return specific[0] if specific else TEXT_PLAIN
    if detected == ZIP:
        return next((c for c in claims if c in _ZIP_FAMILY), ZIP)
    return detected


_PUREMAGIC_TYPES = frozenset(
    normalise(row.mime_type)
    for row in (*puremagic.magic_header_array, *puremagic.magic_footer_array)
    if row.mime_type
)


def _checkable(claim: str) -> bool:
    """Whether sniffing would have recognised a file of this type."""
    return kind_of(claim) != "other" or claim in _PUREMAGIC_TYPES


def _describe(content_type: str) -> str:
    # The declared type comes from the client: only echo it when it is a plain media type.
    return content_type if _MEDIA_TYPE.match(content_type) else "an unrecognised type"


def is_allowed(content_type: str, allowed: Sequence[str]) -> bool:
    """Whether ``allowed`` (``image/png``, ``image/*``, ``*/*``) admits the type."""
    kind = normalise(content_type)
    family = kind.split("/", 1)[0]
    for pattern in allowed:
        wanted = normalise(pattern)
        if wanted in ("*/*", kind) or wanted == f"{family}/*":
            return True
    return False


def check_type(declared: str, detected: str | None, name: str, allowed: Sequence[str]) -> str:
    """The content type to record for the upload, or RejectedFile.

    ``declared`` is the client's Content-Type (``application/octet-stream`` or empty
    means it does not know), ``detected`` what ``sniff`` found, ``name`` the file name.
    Declared type and extension must both agree with the content: a PNG sent as
    application/pdf or named ``x.pdf`` is a ``type_mismatch``. The recorded type must be
    in ``allowed`` or it is ``type_not_allowed``.
    """
    claimed = normalise(declared) or OCTET_STREAM
    from_name = type_from_name(name)
    claims = [c for c in (claimed, from_name) if c is not None and c != OCTET_STREAM]
    if detected is None:
        for claim in claims:
            if _checkable(claim):
                raise RejectedFile(
                    RejectReason.TYPE_MISMATCH,
                    f"the file is said to be {_describe(claim)} but its content is not",
                )
        recorded = claimed
    else:
        found = normalise(detected)
        for claim in claims:
            if not _compatible(claim, found):
                raise RejectedFile(
                    RejectReason.TYPE_MISMATCH,
                    f"the file is said to be {_describe(claim)} but its content is {found}",
                )
        recorded = _refine(found, claims)
    if not is_allowed(recorded, allowed):
        raise RejectedFile(
            RejectReason.TYPE_NOT_ALLOWED, f"{_describe(recorded)} files are not accepted here"
        )
    return recorded
