"""The byte side of file_upload_workflow: assemble, validate, virus_scan, promote.

Every one streams: the object passes through in chunks, hashed on the way, so a 1 GiB
upload costs a few chunks of memory. Validation reads only the head of a file unless the
type needs the whole of it (an archive's directory, an image's header and pixels), and
then only up to the limits in the settings.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.contracts.files import (
    ASSEMBLE_UPLOAD_ACTIVITY,
    FILE_REJECTED,
    FILE_TOO_LARGE_TO_SCAN,
    PROMOTE_FILE_ACTIVITY,
    UPLOAD_CHANGED,
    VALIDATE_UPLOAD_ACTIVITY,
    VIRUS_SCAN_ACTIVITY,
    AssembleRequest,
    FileStatus,
    InvalidFileNameError,
    PromoteRequest,
    PromoteResult,
    ScanRequest,
    ScanResult,
    StagedObject,
    ValidateUploadRequest,
    ValidationResult,
    file_key,
    validate_file_name,
)
from adx_core.contracts.storage import ObjectLocation
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import File, Tenant, TenantQuota
from adx_core.logging import get_logger
from adx_core.scanning import (
    ScanLimitExceededError,
    Scanner,
    ScannerUnavailableError,
)
from adx_core.settings import Settings
from adx_core.storage import ObjectNotFoundError, StorageError, StorageProvider
from adx_core.storage.registry import StorageRegistry
from adx_workers.common.heartbeat import beating
from adx_workers.files.inspection import (
    HEAD_BYTES,
    InspectionLimits,
    RejectedFile,
    check_archive,
    check_image,
    check_type,
    kind_of,
    sniff,
    type_from_name,
)
from adx_workers.files.spool import spooled
from adx_workers.files.storage_activities import provider_of
from adx_workers.files.transfer import (
    SideError,
    as_application_error,
    source_object,
    target_matches,
    transfer,
)

log = get_logger(__name__)

SCANNER_UNAVAILABLE = "ScannerUnavailable"
_HEARTBEAT_EVERY = 8 * 1024 * 1024


def _rejected(reason: str, detail: str, error_type: str = FILE_REJECTED) -> ApplicationError:
    return ApplicationError(
        detail, {"reason": reason, "detail": detail}, type=error_type, non_retryable=True
    )


class _Hashing:
    """An object's chunks, hashed and counted as they pass, with heartbeats."""

    def __init__(self, store: StorageProvider, key: str) -> None:
        self._store = store
        self._key = key
        self.digest = hashlib.sha256()
        self.size = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        since_beat = 0
        async for chunk in self._store.get(self._key):
            self.digest.update(chunk)
            self.size += len(chunk)
            since_beat += len(chunk)
            if since_beat >= _HEARTBEAT_EVERY:
                activity.heartbeat(self.size)
                since_beat = 0
            yield chunk


class UploadActivities:
    def __init__(
        self,
        sessions: Sessions,
        stores: StorageRegistry,
        scanner: Scanner,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._stores = stores
        self._scanner = scanner
        self._settings = settings
        self._limits = InspectionLimits.from_settings(settings)

    @activity.defn(name=ASSEMBLE_UPLOAD_ACTIVITY)
    async def assemble_upload(self, request: AssembleRequest) -> StagedObject:
        """Join a resumable upload's segments into one staged object, hashing on the way;
        the segments go once the whole is stored. A retry after the segments are gone
        finds the assembled object and hashes it again."""
        store = provider_of(self._stores, request.provider)
        parts = sorted(request.parts, key=lambda part: part.offset)
        if not parts:
            raise _rejected("incomplete", "the upload has no bytes")
        expected = 0
        for part in parts:
            if part.offset != expected:
                raise _rejected("incomplete", f"the upload has a gap at byte {expected}")
            expected += part.size
        target = ObjectLocation(request.provider, request.target_key)
        try:
            if not await store.exists(parts[0].key):
                # Assembled by an attempt that crashed before answering: the segments are
                # deleted only after the whole was stored.
                info = await store.stat(request.target_key)
                sha256 = info.sha256 or await store.checksum(request.target_key)
                return StagedObject(target, info.size, sha256)
            digest = hashlib.sha256()

            async def joined() -> AsyncIterator[bytes]:
                for part in parts:
                    async for chunk in store.get(part.key):
                        digest.update(chunk)
                        yield chunk
                    activity.heartbeat(part.offset + part.size)

            info = await store.put(request.target_key, joined())
            for part in parts:
                await store.delete(part.key)
        except ObjectNotFoundError as exc:
            raise _rejected("incomplete", f"a segment of the upload is missing: {exc}") from None
        except StorageError as exc:
            raise as_application_error(SideError("source", exc)) from None
        if info.size != expected:
            raise _rejected("incomplete", f"assembled {info.size} bytes, expected {expected}")
        return StagedObject(target, info.size, digest.hexdigest())

    @activity.defn(name=VALIDATE_UPLOAD_ACTIVITY)
    async def validate_upload(self, request: ValidateUploadRequest) -> ValidationResult:
        """Name, size, quota, the real type against the declared one and the tenant's
        allowed types, and decompression limits for archives and images."""
        try:
            validate_file_name(request.name)
        except InvalidFileNameError as exc:
            raise _rejected("bad_name", str(exc)) from None
        allowed = await self._check_quota(request)
        store = provider_of(self._stores, request.staged.provider)
        try:
            async with spooled(store, request.staged.key, length=HEAD_BYTES) as head:
                hints = (request.declared_type, type_from_name(request.name) or "")
                detected = await asyncio.to_thread(sniff, head, hints)
            content_type = check_type(request.declared_type, detected, request.name, allowed)
            kind = kind_of(content_type)
            if kind in ("archive", "image"):
                await self._check_whole(store, request, kind)
        except RejectedFile as exc:
            raise _rejected(exc.reason, str(exc)) from None
        except StorageError as exc:
            raise as_application_error(SideError("source", exc)) from None
        return ValidationResult(content_type=content_type, kind=kind)

    async def _check_whole(
        self, store: StorageProvider, request: ValidateUploadRequest, kind: str
    ) -> None:
        limit = self._settings.processing_max_bytes
        if request.size > limit:
            # Too large to open here. clamd still unpacks archives within its own limits,
            # and AlertExceedsMax reports what exceeds them, so nothing passes unchecked.
            log.info("too large for a bomb check", kind=kind, size=request.size)
            return
        async with spooled(store, request.staged.key) as path:
            check = check_archive if kind == "archive" else check_image
            await asyncio.to_thread(check, path, self._limits)

    async def _check_quota(self, request: ValidateUploadRequest) -> list[str]:
        """The plan's largest file, total storage and file count; returns the tenant's
        allowed types."""
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            quota = await session.get(TenantQuota, tenant_id)
            tenant = await session.get(Tenant, tenant_id)
            used, count = (
                await session.execute(
                    select(func.coalesce(func.sum(File.size_bytes), 0), func.count()).where(
                        File.status.in_([FileStatus.READY.value, FileStatus.SCANNING.value]),
                        File.id != uuid.UUID(request.file_id),
                    )
                )
            ).one()
        if tenant is None:
            raise _rejected("no_tenant", "the tenant no longer exists")
        if quota is not None:
            if request.size > quota.file_bytes:
                raise _rejected(
                    "too_large", f"the plan allows files of at most {quota.file_bytes} bytes"
                )
            if int(used) + request.size > quota.storage_bytes:
                raise _rejected("quota_exceeded", "the tenant's storage quota is used up")
            if int(count) + 1 > quota.files:
                raise _rejected("quota_exceeded", "the tenant's file quota is used up")
        narrowed = tenant.settings.get("allowed_content_types")
        if isinstance(narrowed, list) and all(isinstance(item, str) for item in narrowed):
            return list(narrowed)
        return list(self._settings.upload_allowed_types)

    @activity.defn(name=VIRUS_SCAN_ACTIVITY)
    async def virus_scan(self, request: ScanRequest) -> ScanResult:
        """Stream the staged object to the scanner. A file past the scan limit is rejected,
        never passed; a scanner that is away fails the attempt, and the retry policy tries
        again: the scan is never skipped. What was scanned must hash to what the API
        acknowledged, so the scanned bytes are the bytes that get promoted."""
        if request.size > self._settings.scan_max_bytes:
            raise _rejected(
                "too_large_to_scan",
                f"the file is larger than the scan limit ({self._settings.scan_max_bytes} bytes)",
                FILE_TOO_LARGE_TO_SCAN,
            )
        store = provider_of(self._stores, request.staged.provider)
        stream = _Hashing(store, request.staged.key)
        try:
            # clamd scans what it was sent after the last chunk: keep beating meanwhile.
            verdict = await beating(self._scanner.scan(aiter(stream)))
        except ScanLimitExceededError as exc:
            raise _rejected("too_large_to_scan", str(exc), FILE_TOO_LARGE_TO_SCAN) from None
        except ScannerUnavailableError as exc:
            log.warning("scanner unavailable", error=str(exc))
            raise ApplicationError(
                f"the virus scanner is unavailable: {exc}", type=SCANNER_UNAVAILABLE
            ) from None
        except StorageError as exc:
            raise as_application_error(SideError("source", exc)) from None
        if verdict.clean and stream.digest.hexdigest() != request.sha256:
            raise _rejected(
                "changed", "the staged bytes no longer match the upload", UPLOAD_CHANGED
            )
        return ScanResult(
            clean=verdict.clean,
            signature=verdict.signature,
            scanner=verdict.scanner,
            scanned_bytes=stream.size,
        )

    @activity.defn(name=PROMOTE_FILE_ACTIVITY)
    async def promote_file(self, request: PromoteRequest) -> PromoteResult:
        """Move the scanned object out of quarantine into the tenant's files, on the
        provider the tenant's files are in now. The record points at the target before the
        bytes move, so an undo always knows what to remove."""
        tenant_id = uuid.UUID(request.tenant_id)
        file_id = uuid.UUID(request.file_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            provider = await session.scalar(
                select(Tenant.storage_provider).where(Tenant.id == tenant_id)
            )
            if provider is None:
                raise _rejected("no_tenant", "the tenant no longer exists")
            target = ObjectLocation(provider, file_key(request.tenant_id, request.file_id))
            file = await session.get(File, file_id)
            if file is None:
                raise _rejected("no_record", "the upload's record is gone")
            file.storage_provider, file.storage_key = target.provider, target.key
        source_store = provider_of(self._stores, request.staged.provider)
        target_store = provider_of(self._stores, target.provider)
        try:
            await self._move(source_store, request, target_store, target)
        except SideError as exc:
            raise as_application_error(exc) from None
        return PromoteResult(location=target)

    async def _move(
        self,
        source: StorageProvider,
        request: PromoteRequest,
        target: StorageProvider,
        location: ObjectLocation,
    ) -> None:
        staged = request.staged
        try:
            present = await source.exists(staged.key)
        except StorageError as exc:
            raise SideError("source", exc) from exc
        if not present:
            # Moved already by an attempt that crashed before answering?
            try:
                info = await target.stat(location.key)
            except ObjectNotFoundError:
                raise SideError("source", ObjectNotFoundError(staged.key)) from None
            except StorageError as exc:
                raise SideError("target", exc) from exc
            if await target_matches(target, location.key, info.size, request.sha256):
                return
            raise SideError("source", ObjectNotFoundError(staged.key))
        if staged.provider == location.provider:
            try:
                info = await beating(source.copy(staged.key, location.key))
            except StorageError as exc:
                raise SideError("target", exc) from exc
            if info.sha256 not in (None, request.sha256):
                raise ApplicationError(
                    "the promoted copy does not match the scanned bytes", type=UPLOAD_CHANGED
                )
        else:
            described = await source_object(source, staged.key)
            if described.sha256 != request.sha256:
                raise ApplicationError(
                    "the staged bytes changed after the scan",
                    type=UPLOAD_CHANGED,
                    non_retryable=True,
                )
            await beating(transfer(source, staged.key, target, location.key, described))
        try:
            await source.delete(staged.key)
        except StorageError as exc:
            raise SideError("source", exc) from exc

    def all(self) -> list[Any]:
        return [self.assemble_upload, self.validate_upload, self.virus_scan, self.promote_file]
