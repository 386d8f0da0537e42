"""Metadata worth recording about an uploaded file, as JSON-safe values only.

Every value is a str, int, float, bool, list or dict of those: bytes are dropped, EXIF
rationals become floats, strings are cut short. Location (the EXIF GPS directory) is
personal data and is left out unless the caller allows it. A file that cannot be read
gives ``{"<kind>_error": ...}`` rather than an exception, and PDF parsing is time-capped.
"""

from __future__ import annotations

import codecs
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image
from pypdf import PasswordType, PdfReader

from .archives import archive_format, count_zip_entries
from .filetypes import kind_of, normalise
from .images import open_image
from .limits import RejectedFile
from .text import guess_text, read_head
from .workcap import WorkLimitExceeded, time_limit

PDF_SECONDS = 5.0
_TEXT_SAMPLE = 1024 * 1024
_CHUNK = 1024 * 1024
_MAX_STRING = 256
_MAX_ITEMS = 64
_MAX_ZIP_ENTRIES = 1_000_000
# Pointers to sub-directories, and blobs that are never useful as text.
_SKIPPED_TAGS = frozenset(
    {
        ExifTags.Base.ExifOffset,
        ExifTags.Base.GPSInfo,
        ExifTags.Base.ExifInteroperabilityOffset,
        ExifTags.Base.MakerNote,
        ExifTags.Base.XMLPacket,
        ExifTags.Base.InterColorProfile,
        ExifTags.Base.UserComment,
    }
)
_PDF_FIELDS = ("title", "author", "subject", "creator", "producer")


def json_safe(value: object) -> Any:
    """``value`` as a JSON value, or None when it has none (bytes, NaN, objects)."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, numbers.Rational) and not isinstance(value, int):
        if value.denominator == 0:
            return None
        value = float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        cleaned = value.replace("\x00", "").strip()
        return cleaned[:_MAX_STRING] or None
    if isinstance(value, tuple | list):
        items = [json_safe(item) for item in value[:_MAX_ITEMS]]
        kept = [item for item in items if item is not None]
        return kept or None
    return None


def _named(tags: Mapping[int, object], names: Mapping[int, str]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for tag, value in tags.items():
        name = names.get(tag)
        if name is None or tag in _SKIPPED_TAGS:
            continue
        safe = json_safe(value)
        if safe is not None:
            named[name] = safe
    return named


def _exif(image: Image.Image, allow_gps: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        exif = image.getexif()
        tags = _named(exif, ExifTags.TAGS) | _named(exif.get_ifd(ExifTags.IFD.Exif), ExifTags.TAGS)
        gps = _named(exif.get_ifd(ExifTags.IFD.GPSInfo), ExifTags.GPSTAGS) if allow_gps else {}
    except Exception:
        # Broken EXIF does not make a broken image; the rest of the metadata stands.
        return {"exif_error": "unreadable"}
    if tags:
        found["exif"] = tags
    if gps:
        found["gps"] = gps
    return found


def _image(path: Path, allow_gps: bool) -> dict[str, Any]:
    try:
        with open_image(path) as image:
            info: dict[str, Any] = {
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "mode": image.mode,
                "animated": bool(getattr(image, "is_animated", False)),
                "frames": int(getattr(image, "n_frames", 1)),
            }
            info |= _exif(image, allow_gps)
    except RejectedFile as error:
        return {"image_error": error.message}
    orientation = info.get("exif", {}).get("Orientation")
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        info["orientation"] = orientation
        # Orientations 5 to 8 turn the picture a quarter: shown, it is the other way up.
        turned = orientation >= 5
        info["display_width"] = info["height"] if turned else info["width"]
        info["display_height"] = info["width"] if turned else info["height"]
    return {"image": info}


def _pdf(path: Path) -> dict[str, Any]:
    try:
        with time_limit(PDF_SECONDS):
            reader = PdfReader(path, strict=False)
            info: dict[str, Any] = {"encrypted": reader.is_encrypted}
            readable = True
            if reader.is_encrypted:
                try:
                    readable = reader.decrypt("") != PasswordType.NOT_DECRYPTED
                except Exception:
                    readable = False
            if readable:
                info["pages"] = len(reader.pages)
                document = reader.metadata
                for field in _PDF_FIELDS if document is not None else ():
                    value = json_safe(getattr(document, field, None))
                    if isinstance(value, str):
                        info[field] = value
    except WorkLimitExceeded:
        return {"pdf_error": f"the PDF took longer than {PDF_SECONDS:g} seconds to read"}
    except Exception as error:
        # pypdf raises a wide range of errors on malformed files; all mean "unreadable".
        return {"pdf_error": f"the PDF cannot be read ({type(error).__name__})"}
    return {"pdf": info}


def _count_lines(path: Path, encoding: str) -> int:
    newline = "\n".encode(encoding)
    ascii_compatible = newline == b"\n"
    decoder = None if ascii_compatible else codecs.getincrementaldecoder(encoding)("replace")
    lines = 0
    last = ""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            if decoder is None:
                lines += chunk.count(b"\n")
                last = chunk[-1:].decode("latin-1")
            else:
                text = decoder.decode(chunk)
                lines += text.count("\n")
                last = text[-1:] or last
    # A last line without a newline is a line too.
    return lines + (1 if last and last != "\n" else 0)


def _text(path: Path) -> dict[str, Any]:
    head, complete = read_head(path, _TEXT_SAMPLE)
    guess = guess_text(head, complete=complete)
    if guess is None:
        return {"text_error": "the file is not readable as text"}
    encoding = guess.encoding
    # The BOM itself is not a character of the first line.
    if guess.bom and encoding.startswith("utf-16"):
        encoding = "utf-16"
    elif guess.bom and encoding.startswith("utf-32"):
        encoding = "utf-32"
    return {
        "text": {
            "encoding": guess.encoding,
            "bom": guess.bom,
            "lines": _count_lines(path, encoding),
            "truncated_sample": not complete,
        }
    }


def _archive(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        found = archive_format(handle.read(512))
        if found != "zip":
            return {"archive": {"format": found}} if found else {}
        try:
            size = os.fstat(handle.fileno()).st_size
            entries = count_zip_entries(handle, size, stop_after=_MAX_ZIP_ENTRIES)
        except RejectedFile as error:
            return {"archive_error": error.message}
    return {"archive": {"format": found, "entries": entries}}


def extract_metadata(
    path: str | os.PathLike[str], content_type: str, *, allow_gps: bool
) -> dict[str, Any]:
    """JSON-safe metadata: ``size_bytes``, ``content_type`` and ``kind`` always, plus
    ``image``, ``pdf``, ``text`` or ``archive`` details (or ``<kind>_error``)."""
    source = Path(path)
    recorded = normalise(content_type)
    kind = kind_of(recorded)
    result: dict[str, Any] = {
        "size_bytes": source.stat().st_size,
        "content_type": recorded,
        "kind": kind,
    }
    if kind == "image":
        result |= _image(source, allow_gps)
    elif kind == "pdf":
        result |= _pdf(source)
    elif kind == "text":
        result |= _text(source)
    elif kind == "archive":
        result |= _archive(source)
    return result
