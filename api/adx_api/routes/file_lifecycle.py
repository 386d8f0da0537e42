"""What a file's owner does after the upload: run its optional steps again, or delete it.

``POST /v1/files/{id}/processing`` starts file_processing_workflow for the steps that are
``failed`` or ``pending`` (or the ones named), for example after a thumbnailer outage.
``DELETE /v1/files/{id}`` removes the file: its bytes and thumbnails first, then the record
is marked ``deleted`` and every grant and share on it goes in the same transaction, so a
retried DELETE after a storage outage finishes the job.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, update

from adx_api.file_access import Access, require_file, require_permission
from adx_api.keys import SESSIONS, SETTINGS, STORES, claims_of
from adx_api.openapi_parts import PREFER, UUID_ID_PARAM, errors, workflow_post
from adx_api.problems import ProblemError
from adx_api.routes.common import parse_uuid, read_json, start_operation
from adx_core.contracts import permissions
from adx_core.contracts.files import (
    FILE_PROCESSING_WORKFLOW,
    PROCESSING_STEPS,
    FileProcessingRequest,
    FileStatus,
    ProcessingInput,
    ProcessingOptions,
    StepState,
    processing_workflow_id,
    thumbnail_prefix,
)
from adx_core.contracts.storage import FILES_TASK_QUEUE, ObjectLocation
from adx_core.db.engine import tenant_session
from adx_core.db.models import File, FilePermission, FileShare, TenantQuota
from adx_core.db.repositories import AuditRepository
from adx_core.storage import ObjectNotFoundError, StorageError

_RERUNNABLE = {StepState.FAILED.value, StepState.PENDING.value}


class ProcessingIn(BaseModel):
    """The steps to run again; by default every ``failed`` or ``pending`` one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: list[str] | None = Field(default=None, min_length=1, max_length=3)


async def reprocess_file(request: web.Request) -> web.Response:
    claims = claims_of(request)
    file_id = parse_uuid(request.match_info["id"], "file")
    # body_exists, not can_read_body: the Idempotency-Key fingerprint may have read it already.
    body = await read_json(request, ProcessingIn) if request.body_exists else ProcessingIn()
    unknown = set(body.steps or ()) - set(PROCESSING_STEPS)
    if unknown:
        raise ProblemError(
            422,
            "validation",
            f"unknown steps: {', '.join(sorted(unknown))}; known: {', '.join(PROCESSING_STEPS)}",
        )
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await require_permission(session, claims, permissions.FILES_WRITE)
        row = await require_file(session, claims, file_id, Access.EDIT)
        quota = await session.get(TenantQuota, uuid.UUID(claims.tenant_id))
    steps = body.steps or [s for s in PROCESSING_STEPS if row.processing.get(s) in _RERUNNABLE]
    if not steps:
        raise ProblemError(409, "conflict", "no step of this file is failed or pending")
    settings = request.app[SETTINGS]
    features = set(quota.features) if quota else set()
    options = ProcessingOptions(
        thumbnail_sizes=list(settings.thumbnail_sizes),
        thumbnail_format=settings.thumbnail_format.value,
        deadline_seconds=settings.processing_deadline_seconds,
        thumbnails="thumbnails" in features,
        analysis="analysis" in features,
    )
    return await start_operation(
        request,
        workflow=FILE_PROCESSING_WORKFLOW,
        arg=FileProcessingRequest(
            tenant_id=claims.tenant_id,
            file_id=str(file_id),
            steps=steps,
            input=ProcessingInput(
                tenant_id=claims.tenant_id,
                file_id=str(file_id),
                location=ObjectLocation(row.storage_provider, row.storage_key),
                content_type=row.content_type,
                kind=str(row.file_metadata.get("kind", "other")),
                size=row.size_bytes,
                options=options,
                sha256=row.checksum_sha256 or "",
            ),
        ),
        workflow_id=processing_workflow_id(str(file_id)),
        domain=FILES_TASK_QUEUE,
        subject_tenant_id=claims.tenant_id,
        conflict_detail="this file's steps are already being run again",
    )


async def delete_file(request: web.Request) -> web.Response:
    claims = claims_of(request)
    file_id = parse_uuid(request.match_info["id"], "file")
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await require_permission(session, claims, permissions.FILES_WRITE)
        row = await require_file(session, claims, file_id, Access.OWN, ready=False)
    if row.status == FileStatus.SCANNING.value:
        raise ProblemError(
            409, "file-not-ready", "the upload is still running; cancel its operation instead"
        )
    store = request.app[STORES].get(row.storage_provider)
    try:
        with contextlib.suppress(ObjectNotFoundError):
            await store.delete(row.storage_key)
        await store.delete_prefix(thumbnail_prefix(claims.tenant_id, str(file_id)))
    except StorageError:
        raise ProblemError(
            503, "unavailable", "storage is unavailable; try again", headers={"Retry-After": "5"}
        ) from None
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await session.execute(delete(FileShare).where(FileShare.file_id == file_id))
        await session.execute(delete(FilePermission).where(FilePermission.file_id == file_id))
        await session.execute(
            update(File).where(File.id == file_id).values(status=FileStatus.DELETED.value)
        )
        await AuditRepository(session).record(
            tenant_id=uuid.UUID(claims.tenant_id),
            action="file.deleted",
            actor_id=claims.user_id[:64],
            subject=f"file:{file_id}",
            details={"name": row.name, "size": row.size_bytes},
        )
    return web.Response(status=204)


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/files/{id}/processing": {
        "post": {
            **workflow_post(
                "Run a file's failed or pending optional steps again "
                "(file_processing_workflow); the owner, an editor or a tenant admin",
                "reprocessFile",
                None,
                400,
                401,
                403,
                404,
                409,
                413,
                415,
                422,
            ),
            "parameters": [PREFER, UUID_ID_PARAM],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ProcessingIn"}}
                },
            },
        }
    },
    "/v1/files/{id}": {
        "delete": {
            "summary": "Delete a file, its thumbnails, grants and shares; the owner or a "
            "tenant admin",
            "operationId": "deleteFile",
            "parameters": [UUID_ID_PARAM],
            "responses": {"204": {"description": "Deleted"}, **errors(401, 403, 404, 409, 503)},
        }
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (ProcessingIn,)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files/{id}/processing", reprocess_file)
    app.router.add_delete("/v1/files/{id}", delete_file)
