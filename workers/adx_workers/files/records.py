"""The file record's side of file_upload_workflow: record, reject, persist, remove.

Each activity is one transaction in the tenant's scope and idempotent: a retry after a
crash finds its own work done and does it no second time.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core import context
from adx_core.contracts.files import (
    FILE_NOT_FOUND,
    PERSIST_FILE_ACTIVITY,
    RECORD_PROCESSING_ACTIVITY,
    RECORD_UPLOAD_ACTIVITY,
    REJECT_FILE_ACTIVITY,
    REMOVE_FILE_ACTIVITY,
    FileStatus,
    PersistFileRequest,
    PersistFileResult,
    PrincipalKind,
    RecordProcessingRequest,
    RecordProcessingResult,
    RecordUploadRequest,
    RecordUploadResult,
    RejectFileRequest,
    RemoveFileRequest,
    RemoveFileResult,
    thumbnail_prefix,
)
from adx_core.contracts.storage import ObjectLocation
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import File, FilePermission
from adx_core.db.repositories import AuditRepository
from adx_core.logging import get_logger
from adx_core.storage import StorageError
from adx_core.storage.registry import StorageRegistry
from adx_workers.files.storage_activities import provider_of
from adx_workers.files.transfer import SideError, as_application_error

log = get_logger(__name__)

_OWNER_GRANT = uuid.UUID("0d7c6a52-3c1e-4f8a-b7a4-2f1f5d0c9e61")


def owner_grant_id(file_id: uuid.UUID) -> uuid.UUID:
    """The owner's permission row has an id derived from the file: inserted once."""
    return uuid.uuid5(_OWNER_GRANT, str(file_id))


def _correlation() -> str | None:
    ctx = context.current()
    return ctx.correlation_id if ctx else None


def _actor(value: str | None) -> str | None:
    return value[:64] if value else None


class FileRecordActivities:
    def __init__(self, sessions: Sessions, stores: StorageRegistry) -> None:
        self._sessions = sessions
        self._stores = stores

    @activity.defn(name=RECORD_UPLOAD_ACTIVITY)
    async def record_upload(self, request: RecordUploadRequest) -> RecordUploadResult:
        """The record of an upload in quarantine (``scanning``): from here on the file shows
        in its owner's listing with its state, but nothing serves its bytes."""
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            result = await session.execute(
                insert(File)
                .values(
                    id=uuid.UUID(request.file_id),
                    tenant_id=tenant_id,
                    name=request.name,
                    content_type=request.declared_type,
                    size_bytes=request.size,
                    checksum_sha256=request.sha256,
                    storage_provider=request.staged.provider,
                    storage_key=request.staged.key,
                    status=FileStatus.SCANNING.value,
                    created_by=uuid.UUID(request.owner_id),
                )
                .on_conflict_do_nothing(index_elements=[File.id])
            )
        return RecordUploadResult(created=bool(result.rowcount))  # type: ignore[attr-defined]

    @activity.defn(name=REJECT_FILE_ACTIVITY)
    async def reject_file(self, request: RejectFileRequest) -> RemoveFileResult:
        """Mark the upload rejected with the reason, audit it, and delete the staged bytes
        unless they are kept for inspection (an infected file)."""
        tenant_id = uuid.UUID(request.tenant_id)
        file_id = uuid.UUID(request.file_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            changed = await session.execute(
                update(File)
                .where(File.id == file_id, File.status == FileStatus.SCANNING.value)
                .values(
                    status=FileStatus.REJECTED.value,
                    rejection={"reason": request.reason, "detail": request.detail[:500]},
                )
            )
            if changed.rowcount:  # type: ignore[attr-defined]
                await AuditRepository(session).record(
                    tenant_id=tenant_id,
                    action="file.infected" if request.reason == "infected" else "file.rejected",
                    actor_id=_actor(request.actor_id),
                    subject=f"file:{file_id}",
                    correlation_id=_correlation(),
                    details={"reason": request.reason, "detail": request.detail[:500]},
                )
        deleted = 0
        if not request.keep_staged and request.staged is not None:
            deleted = await self._delete(request.staged)
        if request.reason == "infected":
            log.warning("upload infected", file_id=str(file_id), signature=request.detail)
        return RemoveFileResult(objects_deleted=deleted, record_deleted=False)

    @activity.defn(name=PERSIST_FILE_ACTIVITY)
    async def persist_file(self, request: PersistFileRequest) -> PersistFileResult:
        """The file becomes readable: its metadata and its owner's permission are written in
        one transaction, so no reader ever sees a ready file without an owner."""
        tenant_id = uuid.UUID(request.tenant_id)
        file_id = uuid.UUID(request.file_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            changed = await session.execute(
                update(File)
                .where(File.id == file_id)
                .values(
                    status=FileStatus.READY.value,
                    content_type=request.content_type,
                    size_bytes=request.size,
                    checksum_sha256=request.sha256,
                    storage_provider=request.location.provider,
                    storage_key=request.location.key,
                    file_metadata=request.metadata,
                    thumbnails=[asdict(t) for t in request.thumbnails],
                    processing=request.processing,
                    analysis=asdict(request.analysis) if request.analysis else None,
                    rejection=None,
                )
            )
            if not changed.rowcount:  # type: ignore[attr-defined]
                raise ApplicationError(
                    "the file record is gone", type=FILE_NOT_FOUND, non_retryable=True
                )
            granted = await session.execute(
                insert(FilePermission)
                .values(
                    id=owner_grant_id(file_id),
                    tenant_id=tenant_id,
                    file_id=file_id,
                    principal_kind=PrincipalKind.USER.value,
                    principal_id=uuid.UUID(request.owner_id),
                    role="owner",
                )
                .on_conflict_do_nothing(index_elements=[FilePermission.id])
            )
            if granted.rowcount:  # type: ignore[attr-defined]
                await AuditRepository(session).record(
                    tenant_id=tenant_id,
                    action="file.uploaded",
                    actor_id=_actor(request.owner_id),
                    subject=f"file:{file_id}",
                    correlation_id=_correlation(),
                    details={
                        "size": request.size,
                        "content_type": request.content_type,
                        "sha256": request.sha256,
                    },
                )
        return PersistFileResult(status=FileStatus.READY.value)

    @activity.defn(name=REMOVE_FILE_ACTIVITY)
    async def remove_file(self, request: RemoveFileRequest) -> RemoveFileResult:
        """Undo an upload: the object the record points to, its thumbnails, the staged
        bytes, and the record with its permissions. Each part is a no-op when gone."""
        tenant_id = uuid.UUID(request.tenant_id)
        file_id = uuid.UUID(request.file_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            row = (
                await session.execute(
                    select(File.storage_provider, File.storage_key).where(File.id == file_id)
                )
            ).one_or_none()
        deleted = 0
        locations = [request.location] if request.location is not None else []
        if row is not None:
            locations.append(ObjectLocation(row.storage_provider, row.storage_key))
        for location in {(loc.provider, loc.key): loc for loc in locations}.values():
            deleted += await self._delete(location)
        if row is not None:
            store = provider_of(self._stores, row.storage_provider)
            try:
                deleted += await store.delete_prefix(
                    thumbnail_prefix(request.tenant_id, request.file_id)
                )
            except StorageError as exc:
                raise as_application_error(SideError("target", exc)) from None
        record_deleted = False
        if row is not None and not request.keep_record:
            async with tenant_session(self._sessions, tenant_id) as session:
                gone = await session.execute(delete(File).where(File.id == file_id))
                record_deleted = bool(gone.rowcount)  # type: ignore[attr-defined]
        return RemoveFileResult(objects_deleted=deleted, record_deleted=record_deleted)

    @activity.defn(name=RECORD_PROCESSING_ACTIVITY)
    async def record_processing(self, request: RecordProcessingRequest) -> RecordProcessingResult:
        """What file_processing_workflow produced, merged into the record."""
        values: dict[str, Any] = {
            "processing": File.processing.op("||")(type_coerce(request.processing, JSONB)),
        }
        if request.thumbnails is not None:
            values["thumbnails"] = [asdict(t) for t in request.thumbnails]
        if request.metadata is not None:
            values["file_metadata"] = request.metadata
        if request.analysis is not None:
            values["analysis"] = asdict(request.analysis)
        async with tenant_session(self._sessions, uuid.UUID(request.tenant_id)) as session:
            changed = await session.execute(
                update(File).where(File.id == uuid.UUID(request.file_id)).values(**values)
            )
        return RecordProcessingResult(updated=bool(changed.rowcount))  # type: ignore[attr-defined]

    async def _delete(self, location: ObjectLocation) -> int:
        store = provider_of(self._stores, location.provider)
        try:
            existed = await store.exists(location.key)
            await store.delete(location.key)
        except StorageError as exc:
            raise as_application_error(SideError("target", exc)) from None
        return int(existed)

    def all(self) -> list[Any]:
        return [
            self.record_upload,
            self.reject_file,
            self.persist_file,
            self.remove_file,
            self.record_processing,
        ]
