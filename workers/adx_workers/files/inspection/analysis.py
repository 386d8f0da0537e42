"""Content analysis behind one small interface, with a default that needs nothing.

``DefaultAnalyzer`` runs offline and quickly: colours and orientation for images,
language and keywords for text and for the first pages of PDFs. A heavier analyzer (a
model, a remote service) plugs in through ``load_analyzer("package.module:ClassName")``.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image, ImageOps
from pypdf import PasswordType, PdfReader

from .colours import dominant_colours
from .filetypes import kind_of, normalise
from .images import open_image
from .language import LANGUAGE_NAMES, guess_language, keywords, words_of
from .limits import InspectionLimits, RejectedFile
from .text import read_text
from .workcap import WorkLimitExceeded, time_limit

_SPEC = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
# Width over height beyond which a picture is no longer square.
_SQUARE_TOLERANCE = 0.05
_SAMPLE_BOX = 128


@dataclass(frozen=True)
class Analysis:
    tags: list[str]
    summary: str
    analyzer: str
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Analyzer(Protocol):
    """Anything with a ``name`` and ``analyze(path, content_type) -> Analysis``.

    ``analyze`` is synchronous and may be slow; callers run it in a thread.
    """

    @property
    def name(self) -> str: ...

    def analyze(self, path: str | os.PathLike[str], content_type: str) -> Analysis: ...


class AnalyzerSpecError(ValueError):
    """An analyzer setting that does not name a usable analyzer class."""


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def orientation_of(width: int, height: int) -> str:
    if abs(width - height) <= max(width, height) * _SQUARE_TOLERANCE:
        return "square"
    return "landscape" if width > height else "portrait"


class DefaultAnalyzer:
    """Offline analysis: image colours and orientation, text language and keywords."""

    name = "default"

    def __init__(
        self,
        limits: InspectionLimits | None = None,
        *,
        text_bytes: int = 2 * 1024 * 1024,
        pdf_pages: int = 3,
        pdf_seconds: float = 5.0,
    ) -> None:
        self.limits = limits or InspectionLimits()
        self.text_bytes = text_bytes
        self.pdf_pages = pdf_pages
        self.pdf_seconds = pdf_seconds

    def analyze(self, path: str | os.PathLike[str], content_type: str) -> Analysis:
        source = Path(path)
        kind = kind_of(content_type)
        if kind == "image":
            return self._image(source)
        if kind == "text":
            return self._text(source)
        if kind == "pdf":
            return self._pdf(source)
        size = source.stat().st_size
        return self._result(
            [kind], f"{normalise(content_type)} file of {_plural(size, 'byte')}", {"size": size}
        )

    def _result(self, tags: list[str], summary: str, details: dict[str, Any]) -> Analysis:
        unique = list(dict.fromkeys(tags))
        return Analysis(tags=unique, summary=summary, analyzer=self.name, details=details)

    def _image(self, path: Path) -> Analysis:
        try:
            with open_image(path, self.limits.max_image_pixels) as image:
                # Colours need no detail: shrink first (JPEG decodes at 1/8 scale) so the
                # full-size picture is never converted or copied.
                image.thumbnail((_SAMPLE_BOX, _SAMPLE_BOX), Image.Resampling.BOX)
                upright = ImageOps.exif_transpose(image)
                picture = image if upright is None else upright
                width, height = picture.size
                colours = dominant_colours(picture)
        except RejectedFile as error:
            return self._result(
                ["image"], "Image that cannot be analysed", {"error": error.message}
            )
        orientation = orientation_of(width, height)
        names = list(dict.fromkeys(colour.name for colour in colours))
        summary = f"{orientation.capitalize()} image"
        if names:
            summary += ", mostly " + " and ".join(names[:2])
        details = {
            "orientation": orientation,
            "colors": [
                {"hex": colour.hex, "name": colour.name, "share": colour.share}
                for colour in colours
            ],
        }
        return self._result(["image", orientation, *names], summary, details)

    def _words(
        self, text: str, noun: str, extra: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        words = words_of(text)
        language = guess_language(words)
        top = keywords(words)
        label = LANGUAGE_NAMES[language] if language else None
        details: dict[str, Any] = {"language": language, "words": len(words), "keywords": top}
        details |= extra
        head = f"{label} {noun}" if label else noun[:1].upper() + noun[1:]
        tags = [noun.lower(), *([label.lower()] if label else []), *top]
        return tags, head, details

    def _text(self, path: Path) -> Analysis:
        decoded = read_text(path, self.text_bytes)
        if decoded is None:
            return self._result(["text"], "File that is not readable text", {})
        tags, head, details = self._words(
            decoded.text, "text", {"encoding": decoded.encoding, "truncated": decoded.truncated}
        )
        count = details["words"]
        amount = (
            f"at least {_plural(count, 'word')}" if decoded.truncated else _plural(count, "word")
        )
        summary = f"{head}, {amount}"
        if details["keywords"]:
            summary += ", about " + ", ".join(details["keywords"][:3])
        return self._result(tags, summary, details)

    def _pdf_text(self, path: Path) -> tuple[int, str] | None:
        """Page count and the text of the first pages; None when a password is needed."""
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            return None
        pages = len(reader.pages)
        parts: list[str] = []
        size = 0
        for index in range(min(pages, self.pdf_pages)):
            part = reader.pages[index].extract_text() or ""
            parts.append(part)
            size += len(part)
            if size >= self.text_bytes:
                break
        return pages, "\n".join(parts)[: self.text_bytes]

    def _pdf(self, path: Path) -> Analysis:
        try:
            with time_limit(self.pdf_seconds):
                found = self._pdf_text(path)
        except WorkLimitExceeded:
            return self._result(["pdf"], "PDF that took too long to read", {})
        except Exception as error:
            # pypdf raises a wide range of errors on malformed files; all mean "unreadable".
            return self._result(["pdf"], "PDF that cannot be read", {"error": type(error).__name__})
        if found is None:
            return self._result(["pdf", "encrypted"], "Encrypted PDF that needs a password", {})
        pages, text = found
        tags, head, details = self._words(text, "PDF", {"pages": pages})
        summary = f"{head}, {_plural(pages, 'page')}"
        if details["keywords"]:
            summary += ", about " + ", ".join(details["keywords"][:3])
        elif not text.strip():
            summary += ", no extractable text"
        return self._result(tags, summary, details)


def load_analyzer(spec: str | None, *, limits: InspectionLimits | None = None) -> Analyzer:
    """The analyzer a setting names: None, "" or "default" give DefaultAnalyzer;
    ``package.module:ClassName`` imports that class and makes one with no arguments."""
    wanted = (spec or "").strip()
    if wanted in ("", "default"):
        return DefaultAnalyzer(limits)
    if not _SPEC.match(wanted):
        raise AnalyzerSpecError(f"analyzer {wanted!r} must be written as package.module:ClassName")
    module_name, _, class_name = wanted.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AnalyzerSpecError(
            f"analyzer module {module_name!r} cannot be imported: {error}"
        ) from error
    factory = getattr(module, class_name, None)
    if not isinstance(factory, type):
        raise AnalyzerSpecError(f"{module_name!r} has no class named {class_name!r}")
    try:
        analyzer = factory()
    except Exception as error:
        raise AnalyzerSpecError(f"analyzer {wanted!r} cannot be created: {error}") from error
    if not isinstance(analyzer, Analyzer) or not isinstance(analyzer.name, str):
        raise AnalyzerSpecError(
            f"{wanted!r} is not an analyzer: it needs a name and analyze(path, content_type)"
        )
    return analyzer
