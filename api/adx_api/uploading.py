"""What both upload entries share: the uploader's tenant and limits, streaming a body into
quarantine, and starting file_upload_workflow.

A body is never held whole: it streams from the socket into the storage provider, hashed
and counted on the way, and the plan's largest file is enforced as the bytes arrive. A
body that goes past it is cut off, its partial object removed, and the answer is 413.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from adx_api.file_access import caller_id, require_permission
from adx_api.keys import SESSIONS, SETTINGS, STORES, TEMPORAL, claims_of, context_of
from adx_api.operations import Operations, search_attributes
from adx_api.problems import ProblemError
from adx_api.routes.common import operation_response
from adx_core.auth import Claims
from adx_core.contracts import permissions
from adx_core.contracts.files import (
    FILE_UPLOAD_WORKFLOW,
    FileUploadRequest,
    InvalidFileNameError,
    ProcessingOptions,
    UploadPart,
    file_id_for_key,
    upload_workflow_id,
    validate_file_name,
)
from adx_core.contracts.storage import FILES_TASK_QUEUE, ObjectLocation
from adx_core.contracts.tenants import TenantStatus
from adx_core.db.engine import tenant_session
from adx_core.db.models import File, Tenant, TenantQuota
from adx_core.metrics import WORKFLOWS_STARTED
from adx_core.storage import StorageError, StorageProvider

_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,62}/[a-z0-9][a-z0-9.+-]{0,126}$")
READ_CHUNK = 256 * 1024


class BodyTooLargeError(Exception):
    pass


@dataclass(frozen=True)
class Uploader:
    """Who uploads, into which tenant, under which limits."""

    tenant_id: str
    owner_id: uuid.UUID
    provider: str
    max_file_bytes: int
    options: ProcessingOptions


async def uploader(request: web.Request) -> Uploader:
    claims = claims_of(request)
    settings = request.app[SETTINGS]
    tenant_uuid = uuid.UUID(claims.tenant_id)
    owner = caller_id(claims)
    async with tenant_session(request.app[SESSIONS], tenant_uuid) as session:
        await require_permission(session, claims, permissions.FILES_WRITE)
        tenant = await session.get(Tenant, tenant_uuid)
        quota = await session.get(TenantQuota, tenant_uuid)
    if tenant is None or quota is None:
        raise ProblemError(404, "not-found", "no such tenant")
    if tenant.status != TenantStatus.ACTIVE.value:
        raise ProblemError(409, "conflict", f"the tenant is {tenant.status}, not active")
    features = set(quota.features)
    return Uploader(
        tenant_id=claims.tenant_id,
        owner_id=owner,
        provider=tenant.storage_provider,
        # A file the scanner cannot take would only be stored to be rejected: refuse it
        # before a byte is sent.
        max_file_bytes=min(quota.file_bytes, settings.scan_max_bytes),
        options=ProcessingOptions(
            thumbnail_sizes=list(settings.thumbnail_sizes),
            thumbnail_format=settings.thumbnail_format.value,
            deadline_seconds=settings.processing_deadline_seconds,
            thumbnails="thumbnails" in features,
            analysis="analysis" in features,
            allow_gps=tenant.settings.get("allow_exif_gps") is True,
        ),
    )


def file_name(raw: str | None) -> str:
    if raw is None:
        raise ProblemError(400, "bad-request", "give the file name: ?name=<file name>")
    try:
        return validate_file_name(raw)
    except InvalidFileNameError as exc:
        raise ProblemError(
            422, "validation", "the file name is not valid", errors=[{"detail": str(exc)}]
        ) from None


def media_type(raw: str | None) -> str:
    value = (raw or "application/octet-stream").split(";")[0].strip().lower()
    if not _MEDIA_TYPE.match(value):
        raise ProblemError(415, "unsupported-media-type", "the Content-Type is not a media type")
    return value


def new_file_id(claims: Claims, key: str | None) -> str:
    """A retried request with the same Idempotency-Key names the same file, and so the
    same workflow."""
    if key is None:
        return str(uuid.uuid4())
    return file_id_for_key(claims.tenant_id, claims.user_id, key)


def too_large(limit: int) -> ProblemError:
    """413, naming the limit: the plan's largest file, or the scan limit when lower."""
    return ProblemError(
        413, "payload-too-large", f"the file may be at most {limit} bytes", max_bytes=limit
    )


class MeteredBody:
    """Chunks of a body, hashed and counted; raises BodyTooLargeError past ``limit``."""

    def __init__(self, chunks: AsyncIterable[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self.digest = hashlib.sha256()
        self.size = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.size += len(chunk)
            if self.size > self._limit:
                raise BodyTooLargeError
            self.digest.update(chunk)
            yield chunk


async def store_body(
    store: StorageProvider, key: str, body: MeteredBody, content_type: str, limit: int
) -> None:
    """Stream ``body`` into ``key``. On any failure the partial object is removed; a body
    past the limit answers 413, and a storage outage 503."""
    try:
        await store.put(key, body, content_type=content_type)
    except BaseException as exc:
        await discard(store, key)
        if isinstance(exc, BodyTooLargeError) or isinstance(exc.__cause__, BodyTooLargeError):
            raise too_large(limit) from None
        if isinstance(exc, StorageError):
            raise ProblemError(
                503,
                "unavailable",
                "storage is unavailable; try again",
                headers={"Retry-After": "5"},
            ) from None
        raise


async def discard(store: StorageProvider, key: str) -> None:
    # An orphan in quarantine is harmless (never served) and visible to operators.
    with contextlib.suppress(StorageError):
        await store.delete(key)


async def refuse_reused_id(request: web.Request, file_id: str) -> None:
    """A key whose operation has aged out of Temporal's retention still names its file."""
    async with tenant_session(request.app[SESSIONS], claims_of(request).tenant_id) as session:
        if await session.get(File, uuid.UUID(file_id)) is not None:
            raise ProblemError(
                409, "conflict", "this Idempotency-Key was already used", file_id=file_id
            )


async def start_upload(
    request: web.Request,
    who: Uploader,
    *,
    file_id: str,
    name: str,
    declared_type: str,
    staged: ObjectLocation,
    size: int,
    sha256: str | None,
    parts: list[UploadPart] | None = None,
    upload_id: str | None = None,
) -> web.Response:
    """Start file_upload_workflow for staged bytes; 202 with the operation. A second
    request for the same file (same Idempotency-Key) gets the first one's operation, and
    its own staged copy is dropped."""
    claims = claims_of(request)
    client = request.app[TEMPORAL]
    arg = FileUploadRequest(
        tenant_id=who.tenant_id,
        file_id=file_id,
        name=name,
        declared_type=declared_type,
        owner_id=str(who.owner_id),
        staged=staged,
        size=size,
        sha256=sha256,
        options=who.options,
        parts=parts or [],
        upload_id=upload_id,
    )
    workflow_id = upload_workflow_id(file_id)
    try:
        handle: Any = await client.start_workflow(
            FILE_UPLOAD_WORKFLOW,
            arg,
            id=workflow_id,
            task_queue=request.app[SETTINGS].task_queue(FILES_TASK_QUEUE),
            search_attributes=search_attributes(
                claims.tenant_id, context_of(request).correlation_id
            ),
            memo={
                "subject_tenant_id": who.tenant_id,
                "requested_by": claims.user_id,
                "file_id": file_id,
            },
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        if not parts:
            await discard(request.app[STORES].get(staged.provider), staged.key)
        handle = client.get_workflow_handle(workflow_id)
        return await operation_response(request, Operations(client), handle, FILE_UPLOAD_WORKFLOW)
    WORKFLOWS_STARTED.labels(FILE_UPLOAD_WORKFLOW).inc()
    return await operation_response(request, Operations(client), handle, FILE_UPLOAD_WORKFLOW)
