"""The limits every inspection obeys, and the one error that rejects a file.

``RejectedFile.reason`` is a stable code that workflows, the API and frontends can branch
on; ``message`` is for people and is built only from our own words and numbers, never
from bytes of the file, so it is safe to log and to show to the uploader.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class RejectReason(StrEnum):
    TYPE_MISMATCH = "type_mismatch"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    IMAGE_TOO_LARGE = "image_too_large"
    ARCHIVE_TOO_LARGE = "archive_too_large"
    ARCHIVE_TOO_DEEP = "archive_too_deep"
    ARCHIVE_RATIO = "archive_ratio"
    ARCHIVE_ENTRIES = "archive_entries"
    ARCHIVE_ENCRYPTED = "archive_encrypted"
    ARCHIVE_UNSUPPORTED = "archive_unsupported"
    CORRUPT = "corrupt"


class RejectedFile(Exception):
    """The file must not be accepted; ``reason`` says why in a machine-stable way."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[RejectedFile], tuple[RejectReason, str]]:
        # The default pickling would call __init__ with the message only.
        return (type(self), (self.reason, self.message))


class LimitSettings(Protocol):
    """The part of ``adx_core.settings.Settings`` the limits are read from."""

    @property
    def max_image_pixels(self) -> int: ...
    @property
    def archive_max_entries(self) -> int: ...
    @property
    def archive_max_bytes(self) -> int: ...
    @property
    def archive_max_ratio(self) -> int: ...
    @property
    def archive_max_depth(self) -> int: ...


@dataclass(frozen=True)
class InspectionLimits:
    """Decompression-bomb limits; the defaults are those of the settings."""

    max_image_pixels: int = 40_000_000
    archive_max_entries: int = 10_000
    archive_max_bytes: int = 1024**3
    archive_max_ratio: int = 100
    # The uploaded archive is depth 1; an archive inside it is depth 2, and so on.
    archive_max_depth: int = 3

    def __post_init__(self) -> None:
        for name in (
            "max_image_pixels",
            "archive_max_entries",
            "archive_max_bytes",
            "archive_max_ratio",
            "archive_max_depth",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> InspectionLimits:
        return cls(
            max_image_pixels=settings.max_image_pixels,
            archive_max_entries=settings.archive_max_entries,
            archive_max_bytes=settings.archive_max_bytes,
            archive_max_ratio=settings.archive_max_ratio,
            archive_max_depth=settings.archive_max_depth,
        )
