"""File inspection for file_upload_workflow's activities: pure, synchronous, CPU-bound.

Every function works on a local file path and touches no network, storage or database;
activities download the object to a temporary file and call these through
``asyncio.to_thread``. A file that must not be accepted raises ``RejectedFile`` with a
stable ``reason`` code.
"""

from .analysis import Analysis, Analyzer, AnalyzerSpecError, DefaultAnalyzer, load_analyzer
from .archives import ArchiveSummary, check_archive
from .filetypes import (
    HEAD_BYTES,
    Kind,
    check_type,
    is_allowed,
    kind_of,
    normalise,
    sniff,
    type_from_name,
)
from .images import ImageInfo, Thumbnail, check_image, make_thumbnails
from .limits import InspectionLimits, RejectedFile, RejectReason
from .metadata import extract_metadata

__all__ = [
    "HEAD_BYTES",
    "Analysis",
    "Analyzer",
    "AnalyzerSpecError",
    "ArchiveSummary",
    "DefaultAnalyzer",
    "ImageInfo",
    "InspectionLimits",
    "Kind",
    "RejectReason",
    "RejectedFile",
    "Thumbnail",
    "check_archive",
    "check_image",
    "check_type",
    "extract_metadata",
    "is_allowed",
    "kind_of",
    "load_analyzer",
    "make_thumbnails",
    "normalise",
    "sniff",
    "type_from_name",
]
