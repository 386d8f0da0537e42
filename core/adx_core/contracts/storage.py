"""Storage contracts: the idempotent storage activities and file_migration_workflow.

The operator starts file_migration_workflow for a ``StorageMigration`` custom resource: its
spec (camelCase in crds/) is read into a ``FileMigrationRequest`` by
``adx_operator.migration_plan``, and the migration's progress counters become its status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

FILES_TASK_QUEUE = "files"
FILE_MIGRATION_WORKFLOW = "file_migration_workflow"

# Idempotent storage activities, usable by any workflow.
COPY_OBJECT_ACTIVITY = "copy_object_activity"
DELETE_OBJECT_ACTIVITY = "delete_object_activity"
CHECKSUM_OBJECT_ACTIVITY = "checksum_object_activity"
STORE_CONTENT_ACTIVITY = "store_content_activity"

# Activities of file_migration_workflow.
START_MIGRATION_ACTIVITY = "start_migration_activity"
INVENTORY_ACTIVITY = "inventory_migration_activity"
LIST_MIGRATION_PAGE_ACTIVITY = "list_migration_page_activity"
PROBE_TARGET_ACTIVITY = "probe_migration_target_activity"
COPY_BATCH_ACTIVITY = "copy_migration_batch_activity"
SWITCH_RECORDS_ACTIVITY = "switch_file_records_activity"
RESTORE_RECORDS_ACTIVITY = "restore_file_records_activity"
DELETE_COPIES_ACTIVITY = "delete_migration_copies_activity"
DELETE_SOURCE_ACTIVITY = "delete_migration_source_activity"
FINISH_MIGRATION_ACTIVITY = "finish_migration_activity"

# ApplicationError types. The target errors are what failover acts on: after the copy's
# retry policy is spent on one of them, the next target is tried.
TARGET_UNAVAILABLE = "TargetUnavailable"  # retryable: down, throttling, timing out
TARGET_REFUSED = "TargetRefused"  # not retryable: credentials or permissions
SOURCE_UNAVAILABLE = "SourceUnavailable"  # retryable
SOURCE_REFUSED = "SourceRefused"  # not retryable
OBJECT_NOT_FOUND = "ObjectNotFound"  # not retryable
UNSAFE_KEY = "UnsafeKey"  # not retryable
CHECKSUM_MISMATCH = "ChecksumMismatch"  # retryable: a fresh copy can succeed
INVALID_MIGRATION = "InvalidMigration"  # not retryable
TARGET_ERRORS = (TARGET_UNAVAILABLE, TARGET_REFUSED)
NON_RETRYABLE_ERRORS = (
    TARGET_REFUSED,
    SOURCE_REFUSED,
    OBJECT_NOT_FOUND,
    UNSAFE_KEY,
    INVALID_MIGRATION,
)

MAX_BATCH_SIZE = 1000
MAX_PARALLELISM = 64
MAX_FALLBACK_TARGETS = 3


def migration_workflow_id(tenant_id: str) -> str:
    """One migration per tenant at a time: two moving the same files would race."""
    return f"file-migration-{tenant_id}"


class MigrationStatus(StrEnum):
    RUNNING = "running"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # rolled back as far as it could; ``failure`` says what is left


# --- the storage activities -------------------------------------------------------------


@dataclass(frozen=True)
class ObjectLocation:
    provider: str
    key: str


@dataclass(frozen=True)
class CopyObjectRequest:
    source: ObjectLocation
    target: ObjectLocation
    # When known (the file record's hash), the source must still hash to it.
    expected_sha256: str | None = None


@dataclass(frozen=True)
class CopyObjectResult:
    size: int
    sha256: str
    copied: bool  # False: the target already held the same bytes


@dataclass(frozen=True)
class DeleteObjectResult:
    deleted: bool


@dataclass(frozen=True)
class ChecksumResult:
    sha256: str
    size: int


@dataclass(frozen=True)
class StoreContentRequest:
    """Move an uploaded object to its content-addressed key ``content/<sha256>``."""

    tenant_id: str
    staged: ObjectLocation
    sha256: str
    provider: str


@dataclass(frozen=True)
class StoreContentResult:
    location: ObjectLocation
    size: int
    stored: bool  # False: that content was already there


# --- file_migration_workflow ------------------------------------------------------------


@dataclass(frozen=True)
class TargetFailure:
    target: str
    cause: str
    # Copies left on the failed target that could not be removed (it was down).
    orphaned_copies: int = 0


@dataclass(frozen=True)
class MigrationCheckpoint:
    """Where a continued run picks up. Only continue-as-new sets it."""

    target_index: int
    page_token: str | None
    files_total: int
    bytes_total: int
    files_done: int
    bytes_done: int
    files_copied: int
    files_skipped: int
    records_switched: int
    runs: int
    last_seq: int
    failed_targets: list[TargetFailure] = field(default_factory=list)
    bytes_copied: int = 0
    target_empty: bool = False


@dataclass(frozen=True)
class FileMigrationRequest:
    tenant_id: str
    target: str
    fallback_targets: list[str] = field(default_factory=list)
    # Empty: the provider the tenant's files are in now.
    source: str = ""
    # A folder inside the tenant's prefix (``invoices/2024/``); empty for all its files.
    prefix: str = ""
    batch_size: int = 100
    parallelism: int = 8
    delete_source: bool = False
    # Attempts of one batch against a target before failing over to the next one.
    target_attempts: int = 5
    # Batches per run before continuing as new (the history stays far below its limits).
    batches_per_run: int = 100
    migration_id: str = ""
    requested_by: str | None = None
    checkpoint: MigrationCheckpoint | None = None


@dataclass(frozen=True)
class MigrationResult:
    migration_id: str
    tenant_id: str
    source: str
    target: str
    files_total: int
    bytes_total: int
    files_copied: int
    files_skipped: int
    bytes_copied: int
    records_switched: int
    source_deleted: int
    failed_targets: list[TargetFailure] = field(default_factory=list)
    runs: int = 1


# --- activity inputs and outputs ---------------------------------------------------------


@dataclass(frozen=True)
class StartMigration:
    migration_id: str
    tenant_id: str
    source: str
    targets: list[str]
    prefix: str
    delete_source: bool
    requested_by: str | None


@dataclass(frozen=True)
class MigrationPlan:
    source: str
    # The absolute storage prefix: tenants/<id>/ or a folder inside it.
    prefix: str
    whole_tenant: bool


@dataclass(frozen=True)
class InventoryRequest:
    provider: str
    prefix: str


@dataclass(frozen=True)
class Inventory:
    files: int
    bytes: int


@dataclass(frozen=True)
class ObjectRef:
    key: str
    size: int


@dataclass(frozen=True)
class ListPageRequest:
    provider: str
    prefix: str
    page_token: str | None
    page_size: int


@dataclass(frozen=True)
class TargetProbe:
    empty: bool


@dataclass(frozen=True)
class ObjectPage:
    objects: list[ObjectRef]
    next_token: str | None


@dataclass(frozen=True)
class CopyBatch:
    migration_id: str
    tenant_id: str
    source: str
    target: str
    objects: list[ObjectRef]
    parallelism: int
    # Whether an object this migration has no row for may already be on the target. False
    # when the target held nothing under the prefix as this target was chosen: then the
    # per-object check is skipped.
    check_target: bool = True


@dataclass(frozen=True)
class CopiedObject:
    key: str
    size: int
    sha256: str
    copied: bool  # False: already on the target (a resumed batch, or the same bytes)


@dataclass(frozen=True)
class BatchResult:
    objects: list[CopiedObject]
    # Source objects deleted since they were listed: nothing to copy.
    vanished: int = 0


@dataclass(frozen=True)
class SwitchRecords:
    migration_id: str
    tenant_id: str
    target: str
    # Records now pointing at any of these are switched (the source, or a failed target).
    from_providers: list[str]
    keys: list[str]


@dataclass(frozen=True)
class RestoreRecords:
    migration_id: str
    tenant_id: str
    source: str
    # Restore records that point at these providers back to the source.
    targets: list[str]


@dataclass(frozen=True)
class RecordsResult:
    records: int


@dataclass(frozen=True)
class DeleteCopies:
    migration_id: str
    tenant_id: str
    target: str


@dataclass(frozen=True)
class DeleteSource:
    migration_id: str
    tenant_id: str
    source: str
    target: str


@dataclass(frozen=True)
class DeletedObjects:
    deleted: int


@dataclass(frozen=True)
class FinishMigration:
    migration_id: str
    tenant_id: str
    status: MigrationStatus
    target: str | None
    whole_tenant: bool
    result: MigrationResult | None = None
    failure: str | None = None


@dataclass(frozen=True)
class FinishResult:
    status: MigrationStatus
