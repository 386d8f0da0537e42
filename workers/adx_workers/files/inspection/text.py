"""Is a run of bytes text, and in which encoding: shared by sniffing, metadata and analysis.

Only a bounded head of the file is ever looked at. Valid UTF-8 (and plain ASCII) is
recognised directly; anything else is left to charset-normalizer. Decoded text with more
than a trace of control characters is treated as binary.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer

# The longest BOMs first: the UTF-32-LE BOM begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Control characters that plain text does contain.
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")
# More control characters than this share of the decoded text means binary.
_MAX_CONTROL_SHARE = 0.005
# How much worse than the best guess windows-1252 may look and still win.
_NEAR_TIE_CHAOS = 0.12
_NEAR_TIE_COHERENCE = 0.05


@dataclass(frozen=True)
class TextGuess:
    encoding: str
    bom: bool


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str
    bom: bool
    # Only the first ``max_bytes`` of a longer file were decoded.
    truncated: bool


def bom_of(head: bytes) -> tuple[bytes, str] | None:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return bom, encoding
    return None


def _decode(data: bytes, encoding: str, *, complete: bool) -> str | None:
    # An incremental decoder keeps a multi-byte character cut by the end of the head
    # pending instead of calling it an error.
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        return decoder.decode(data, final=complete)
    except (UnicodeDecodeError, LookupError):
        return None


def _looks_like_text(text: str) -> bool:
    if not text:
        return True
    controls = sum(1 for char in text if char < " " and char not in _TEXT_CONTROLS)
    return controls <= len(text) * _MAX_CONTROL_SHARE


def _legacy_encoding(head: bytes) -> str | None:
    """charset-normalizer's choice, with windows-1252 winning near-ties.

    Single-byte encodings are often about equally plausible for a short sample (French in
    Latin-1 reads as Baltic cp1257 with a few odd letters). Most legacy text in the wild
    is windows-1252 (WHATWG reads ISO-8859-1 as it), so it wins when nearly as good.
    """
    matches = charset_normalizer.from_bytes(head)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if (
            match.encoding == "cp1252"
            and match.chaos <= best.chaos + _NEAR_TIE_CHAOS
            and match.coherence >= best.coherence - _NEAR_TIE_COHERENCE
        ):
            return match.encoding
    return best.encoding


def guess_text(head: bytes, *, complete: bool) -> TextGuess | None:
    """The encoding of ``head`` if it is text, else None.

    ``complete`` says whether ``head`` is the whole file (so a cut character at its end
    is an error rather than the edge of the sample).
    """
    if not head:
        return TextGuess("ascii", bom=False)
    found = bom_of(head)
    if found is not None:
        bom, bom_encoding = found
        decoded = _decode(head[len(bom) :], bom_encoding, complete=complete)
        if decoded is None or not _looks_like_text(decoded):
            return None
        return TextGuess(bom_encoding, bom=True)
    if b"\x00" in head:
        return None
    encoding: str | None = "ascii"
    text: str | None = None
    if head.isascii():
        text = head.decode("ascii")
    else:
        encoding = "utf-8"
        text = _decode(head, "utf-8", complete=complete)
        if text is None:
            encoding = _legacy_encoding(head)
            text = None if encoding is None else _decode(head, encoding, complete=complete)
    if encoding is None or text is None or not _looks_like_text(text):
        return None
    return TextGuess(encoding, bom=False)


def read_head(path: Path, size: int) -> tuple[bytes, bool]:
    """The first ``size`` bytes and whether they are the whole file."""
    with path.open("rb") as handle:
        head = handle.read(size)
        complete = len(head) < size or os.fstat(handle.fileno()).st_size == size
    return head, complete


def read_text(path: Path, max_bytes: int) -> DecodedText | None:
    """The text of the first ``max_bytes`` of the file, or None when it is not text."""
    head, complete = read_head(path, max_bytes)
    guess = guess_text(head, complete=complete)
    if guess is None:
        return None
    found = bom_of(head) if guess.bom else None
    body = head[len(found[0]) :] if found is not None else head
    decoder = codecs.getincrementaldecoder(guess.encoding)(errors="replace")
    return DecodedText(
        text=decoder.decode(body, final=complete),
        encoding=guess.encoding,
        bom=guess.bom,
        truncated=not complete,
    )
