"""File contracts: file_upload_workflow, file_processing_workflow and file_sharing_workflow.

An upload is staged in the tenant's quarantine (``tenants/<id>/quarantine/<file id>/...``)
by the API and is durable from the 202 on. The workflow validates it, scans it, promotes it
to ``tenants/<id>/files/<file id>``, then makes thumbnails, metadata and an analysis in
parallel under a deadline, and persists the record with the owner's permission in one
transaction. Nothing in quarantine is ever served: every read endpoint serves only files
whose status is ``ready``.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from adx_core.contracts.storage import ObjectLocation

FILE_UPLOAD_WORKFLOW = "file_upload_workflow"
FILE_PROCESSING_WORKFLOW = "file_processing_workflow"
FILE_SHARING_WORKFLOW = "file_sharing_workflow"

# Activities of file_upload_workflow (the seeds name the first three).
VIRUS_SCAN_ACTIVITY = "virus_scan_activity"
GENERATE_THUMBNAILS_ACTIVITY = "generate_thumbnails_activity"
EXTRACT_METADATA_ACTIVITY = "extract_metadata_activity"
ANALYZE_CONTENT_ACTIVITY = "analyze_content_activity"
ASSEMBLE_UPLOAD_ACTIVITY = "assemble_upload_activity"
RECORD_UPLOAD_ACTIVITY = "record_upload_activity"
VALIDATE_UPLOAD_ACTIVITY = "validate_upload_activity"
REJECT_FILE_ACTIVITY = "reject_file_activity"
PROMOTE_FILE_ACTIVITY = "promote_file_activity"
PERSIST_FILE_ACTIVITY = "persist_file_activity"
REMOVE_FILE_ACTIVITY = "remove_file_activity"
RECORD_PROCESSING_ACTIVITY = "record_processing_activity"

# Activities of file_sharing_workflow.
VALIDATE_SHARE_ACTIVITY = "validate_share_activity"
CREATE_SHARE_ACTIVITY = "create_share_activity"
REVOKE_SHARE_ACTIVITY = "revoke_share_activity"

# ApplicationError types (all non-retryable: another attempt gives the same answer).
FILE_INFECTED = "FileInfected"
FILE_REJECTED = "FileRejected"  # validation: type, name, size, bomb limits, quota
FILE_TOO_LARGE_TO_SCAN = "FileTooLargeToScan"
UPLOAD_CHANGED = "UploadChanged"  # the staged bytes no longer hash to what was acknowledged
SHARE_REFUSED = "ShareRefused"
FILE_NOT_FOUND = "FileNotFound"
NON_RETRYABLE_ERRORS = (
    FILE_INFECTED,
    FILE_REJECTED,
    FILE_TOO_LARGE_TO_SCAN,
    UPLOAD_CHANGED,
    SHARE_REFUSED,
    FILE_NOT_FOUND,
)

MAX_NAME_LENGTH = 255
_FORBIDDEN_NAME_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_RESERVED_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


class FileStatus(StrEnum):
    SCANNING = "scanning"  # staged in quarantine; validation and scan running
    READY = "ready"
    REJECTED = "rejected"  # invalid or infected; ``rejection`` says why
    DELETED = "deleted"  # removed by its owner; usage and quotas no longer count it


class StepState(StrEnum):
    DONE = "done"
    PENDING = "pending"  # late or failed: file_processing_workflow runs it again
    FAILED = "failed"  # file_processing_workflow gave up too
    SKIPPED = "skipped"  # does not apply (a thumbnail of a zip) or not in the plan


class ShareRole(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"


class PrincipalKind(StrEnum):
    USER = "user"
    GROUP = "group"


PROCESSING_STEPS = ("thumbnails", "metadata", "analysis")


class InvalidFileNameError(ValueError):
    pass


def validate_file_name(name: str) -> str:
    """The name as stored: NFC-normalised and trimmed. No path parts, no control or
    shell-hostile characters, no device names, at most 255 UTF-8 bytes."""
    normalized = unicodedata.normalize("NFC", name).strip()
    if not normalized or normalized in (".", ".."):
        raise InvalidFileNameError("the file name is empty")
    if len(normalized.encode("utf-8")) > MAX_NAME_LENGTH:
        raise InvalidFileNameError(f"the file name may be at most {MAX_NAME_LENGTH} bytes")
    if _FORBIDDEN_NAME_CHARS.search(normalized):
        raise InvalidFileNameError(
            'the file name may not contain path separators, control characters or :*?"<>|'
        )
    if normalized.split(".")[0].lower() in _RESERVED_NAMES:
        raise InvalidFileNameError("the file name is a reserved device name")
    if normalized.endswith("."):
        raise InvalidFileNameError("the file name may not end with a dot")
    return normalized


# Ids derived from the request, so that retries land on the same workflow.
_UPLOAD_NAMESPACE = uuid.UUID("5b0f7d1e-4a4c-4b8e-9a57-0f6e0c2f7a11")


def file_id_for_key(tenant_id: str, user_id: str, idempotency_key: str) -> str:
    """The file a retried upload with the same Idempotency-Key names: one per tenant,
    user and key, so that two users' keys never collide."""
    return str(uuid.uuid5(_UPLOAD_NAMESPACE, f"{tenant_id}\x00{user_id}\x00{idempotency_key}"))


def upload_workflow_id(file_id: str) -> str:
    return f"file-upload-{file_id}"


def processing_workflow_id(file_id: str) -> str:
    return f"file-processing-{file_id}"


def sharing_workflow_id(share_id: str) -> str:
    return f"file-share-{share_id}"


def quarantine_prefix(tenant_id: str, file_id: str) -> str:
    return f"tenants/{tenant_id}/quarantine/{file_id}/"


def file_key(tenant_id: str, file_id: str) -> str:
    return f"tenants/{tenant_id}/files/{file_id}"


def thumbnail_prefix(tenant_id: str, file_id: str) -> str:
    return f"tenants/{tenant_id}/thumbnails/{file_id}/"


# --- file_upload_workflow -------------------------------------------------------------


@dataclass(frozen=True)
class UploadPart:
    """One segment of a resumable upload, as stored."""

    key: str
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True)
class ProcessingOptions:
    thumbnail_sizes: list[int]
    thumbnail_format: str
    deadline_seconds: float
    # Plan features: a plan without them skips the step.
    thumbnails: bool = True
    analysis: bool = True
    # EXIF GPS stays in the metadata only when the tenant allows it.
    allow_gps: bool = False


@dataclass(frozen=True)
class FileUploadRequest:
    tenant_id: str
    file_id: str
    name: str
    declared_type: str
    owner_id: str
    # Where the bytes are staged. A resumable upload gives ``parts`` instead, and the
    # workflow assembles them into ``staged`` first.
    staged: ObjectLocation
    size: int
    sha256: str | None
    options: ProcessingOptions
    parts: list[UploadPart] = field(default_factory=list)
    upload_id: str | None = None


@dataclass(frozen=True)
class AssembleRequest:
    tenant_id: str
    upload_id: str
    provider: str
    parts: list[UploadPart]
    target_key: str


@dataclass(frozen=True)
class StagedObject:
    location: ObjectLocation
    size: int
    sha256: str


@dataclass(frozen=True)
class RecordUploadRequest:
    tenant_id: str
    file_id: str
    name: str
    declared_type: str
    owner_id: str
    staged: ObjectLocation
    size: int
    sha256: str | None


@dataclass(frozen=True)
class RecordUploadResult:
    created: bool


@dataclass(frozen=True)
class ValidateUploadRequest:
    tenant_id: str
    file_id: str
    staged: ObjectLocation
    name: str
    declared_type: str
    size: int


@dataclass(frozen=True)
class ValidationResult:
    content_type: str
    kind: str  # image, pdf, text, archive or other


@dataclass(frozen=True)
class ScanRequest:
    tenant_id: str
    file_id: str
    staged: ObjectLocation
    size: int
    # What the API acknowledged; the scan hashes what it sends and must match.
    sha256: str


@dataclass(frozen=True)
class ScanResult:
    clean: bool
    signature: str | None
    scanner: str
    scanned_bytes: int


@dataclass(frozen=True)
class RejectFileRequest:
    tenant_id: str
    file_id: str
    reason: str
    detail: str
    actor_id: str | None
    # Infected files stay in quarantine for inspection; anything else is deleted.
    keep_staged: bool
    staged: ObjectLocation | None = None


@dataclass(frozen=True)
class PromoteRequest:
    tenant_id: str
    file_id: str
    staged: ObjectLocation
    sha256: str


@dataclass(frozen=True)
class PromoteResult:
    location: ObjectLocation


@dataclass(frozen=True)
class ProcessingInput:
    tenant_id: str
    file_id: str
    location: ObjectLocation
    content_type: str
    kind: str
    size: int
    options: ProcessingOptions
    sha256: str = ""


@dataclass(frozen=True)
class ThumbnailInfo:
    size: int
    key: str
    width: int
    height: int
    content_type: str
    bytes: int


@dataclass(frozen=True)
class ThumbnailsResult:
    thumbnails: list[ThumbnailInfo]
    skipped: str | None = None  # why none were made (not an image, too large)


@dataclass(frozen=True)
class MetadataResult:
    metadata: dict[str, Any]


@dataclass(frozen=True)
class AnalysisResult:
    analyzer: str
    tags: list[str]
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


@dataclass(frozen=True)
class PersistFileRequest:
    tenant_id: str
    file_id: str
    owner_id: str
    location: ObjectLocation
    content_type: str
    size: int
    sha256: str
    processing: dict[str, str]
    thumbnails: list[ThumbnailInfo]
    metadata: dict[str, Any]
    analysis: AnalysisResult | None


@dataclass(frozen=True)
class PersistFileResult:
    status: str


@dataclass(frozen=True)
class RemoveFileRequest:
    tenant_id: str
    file_id: str
    location: ObjectLocation | None
    # Rejected uploads keep their record (and infected ones their quarantined bytes).
    keep_record: bool = False


@dataclass(frozen=True)
class RemoveFileResult:
    objects_deleted: int
    record_deleted: bool


@dataclass(frozen=True)
class ProcessedFile:
    file_id: str
    name: str
    content_type: str
    size: int
    sha256: str
    status: str
    storage_provider: str
    # Each optional step's state: done, pending, failed or skipped.
    processing: dict[str, str]
    # The pending steps as marks a client can test for: "thumbnails_pending".
    marks: list[str]
    thumbnails: list[ThumbnailInfo]
    metadata: dict[str, Any]
    analysis: AnalysisResult | None
    processing_operation: str | None = None


# --- file_processing_workflow -----------------------------------------------------------


@dataclass(frozen=True)
class FileProcessingRequest:
    """Run optional steps again for a ready file: those the upload left pending."""

    tenant_id: str
    file_id: str
    steps: list[str]
    input: ProcessingInput
    # Attempts per step before it is marked failed.
    attempts: int = 3


@dataclass(frozen=True)
class RecordProcessingRequest:
    tenant_id: str
    file_id: str
    processing: dict[str, str]
    thumbnails: list[ThumbnailInfo] | None = None
    metadata: dict[str, Any] | None = None
    analysis: AnalysisResult | None = None


@dataclass(frozen=True)
class RecordProcessingResult:
    updated: bool


@dataclass(frozen=True)
class FileProcessingResult:
    file_id: str
    processing: dict[str, str]


# --- file_sharing_workflow --------------------------------------------------------------


@dataclass(frozen=True)
class ShareGrantee:
    kind: PrincipalKind
    id: str


@dataclass(frozen=True)
class FileShareRequest:
    """Share a file: with users or groups of the same tenant (``grantees``), or as a link
    (``link=True``) with an expiry and an optional password. The API makes the link token
    and hashes the password; the workflow stores only hashes."""

    tenant_id: str
    file_id: str
    share_id: str
    sharer_id: str
    role: ShareRole
    grantees: list[ShareGrantee] = field(default_factory=list)
    link: bool = False
    expires_at: datetime | None = None
    token_hash: str | None = None
    password_hash: str | None = None
    # The link's URL path, given back in the result so the sharer can pass it on.
    link_path: str | None = None
    # People to tell (a link share may name e-mail addresses).
    notify_emails: list[str] = field(default_factory=list)
    message: str | None = None


@dataclass(frozen=True)
class ValidateShareResult:
    file_name: str
    # The e-mail addresses to tell: users, members of groups, or those a link names.
    recipients: list[str]
    sharer_name: str


@dataclass(frozen=True)
class CreateShareResult:
    created: bool
    grants: int


@dataclass(frozen=True)
class RevokeShareRequest:
    tenant_id: str
    share_id: str


@dataclass(frozen=True)
class RevokeShareResult:
    revoked: bool


@dataclass(frozen=True)
class ShareResult:
    share_id: str
    file_id: str
    role: str
    grants: int
    notified: int
    link: str | None = None
    expires_at: datetime | None = None
    # Recipients whose notification failed for good; the share stands without it.
    notify_failed: int = 0
