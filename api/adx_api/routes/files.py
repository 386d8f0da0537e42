"""Files: ``POST /v1/files`` (an upload: raw body or multipart), and the reads.

An upload streams into the tenant's quarantine and starts file_upload_workflow; the 202's
operation ends with the file (its result holds ``file_id``). The reads serve only files
the caller holds a grant on (tenant admins: all of the tenant's), and bytes only of files
that are ``ready``: scanned, promoted and recorded.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from sqlalchemy import Select, and_, exists, or_, select

from adx_api.file_access import (
    Access,
    caller_id,
    is_tenant_admin,
    require_file,
    require_permission,
)
from adx_api.keys import SESSIONS, STORES, claims_of
from adx_api.openapi_parts import (
    DOWNLOAD_PARAMETERS,
    OPERATION,
    OPERATION_STARTED,
    PREFER,
    UUID_ID_PARAM,
    WORKFLOW_EXTENSION,
    download_responses,
    errors,
    json_response,
)
from adx_api.problems import ProblemError
from adx_api.routes.common import existing_operation, idempotency_key, parse_uuid
from adx_api.streaming import stream_object
from adx_api.uploading import (
    READ_CHUNK,
    MeteredBody,
    file_name,
    media_type,
    new_file_id,
    refuse_reused_id,
    start_upload,
    store_body,
    too_large,
    uploader,
)
from adx_core.contracts import permissions
from adx_core.contracts.files import (
    FILE_UPLOAD_WORKFLOW,
    FileStatus,
    quarantine_prefix,
    upload_workflow_id,
)
from adx_core.contracts.storage import ObjectLocation
from adx_core.db.engine import tenant_session
from adx_core.db.file_grants import held_by
from adx_core.db.models import File, FilePermission

# A deleted file is gone for its users; it stays on record only for usage history.
_LISTED = frozenset({FileStatus.SCANNING.value, FileStatus.READY.value, FileStatus.REJECTED.value})
MAX_PAGE = 100
DEFAULT_PAGE = 50


async def upload_file(request: web.Request) -> web.Response:
    """Stream the body into quarantine, then start file_upload_workflow (202)."""
    claims = claims_of(request)
    key = idempotency_key(request)
    file_id = new_file_id(claims, key)
    if key is not None:
        workflow_id = upload_workflow_id(file_id)
        earlier = await existing_operation(request, workflow_id)
        if earlier is not None:
            return earlier
        await refuse_reused_id(request, file_id)
    who = await uploader(request)
    if request.content_length is not None and request.content_length > who.max_file_bytes:
        # Multipart framing counts too, so this only refuses what cannot possibly fit.
        raise too_large(who.max_file_bytes)
    if request.content_type == "multipart/form-data":
        name, declared, chunks = await _multipart_file(request)
    else:
        name = file_name(request.query.get("name"))
        declared = media_type(request.headers.get("Content-Type"))
        chunks = request.content.iter_chunked(READ_CHUNK)
    staged = ObjectLocation(
        who.provider, f"{quarantine_prefix(who.tenant_id, file_id)}{uuid.uuid4().hex}"
    )
    body = MeteredBody(chunks, who.max_file_bytes)
    store = request.app[STORES].get(who.provider)
    await store_body(store, staged.key, body, declared, who.max_file_bytes)
    return await start_upload(
        request,
        who,
        file_id=file_id,
        name=name,
        declared_type=declared,
        staged=staged,
        size=body.size,
        sha256=body.digest.hexdigest(),
    )


async def _multipart_file(request: web.Request) -> tuple[str, str, Any]:
    """The part named ``file``: its name (``?name=`` wins over the part's filename), its
    type, and its bytes as a stream. Other parts before it are refused."""
    try:
        reader = await request.multipart()
        part = await reader.next()
    except (BadHttpMessage, ValueError):  # a part's headers or the boundary are broken
        raise ProblemError(400, "malformed-body", "the multipart body is malformed") from None
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise ProblemError(400, "bad-request", "send one multipart part named 'file'")
    name = file_name(request.query.get("name") or part.filename)
    declared = media_type(part.headers.get("Content-Type"))

    async def chunks() -> Any:
        while chunk := await part.read_chunk(READ_CHUNK):
            yield chunk

    return name, declared, chunks()


def _readable(user_id: uuid.UUID) -> Any:
    """Files the user uploaded or holds a live grant on."""
    return (File.created_by == user_id) | exists().where(
        FilePermission.file_id == File.id, held_by(user_id)
    )


def _cursor(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    if raw is None:
        return None
    try:
        created, file_id = json.loads(base64.urlsafe_b64decode(raw.encode("ascii") + b"=="))
        return datetime.fromisoformat(created), uuid.UUID(file_id)
    except (ValueError, TypeError, binascii.Error, UnicodeError, json.JSONDecodeError):
        raise ProblemError(400, "bad-query", "the cursor is not one this API gave") from None


def _next_cursor(row: File) -> str:
    raw = json.dumps([row.created_at.isoformat(), str(row.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _filters(request: web.Request, query: Select[Any]) -> Select[Any]:
    params = request.query
    status = params.get("status")
    if status is not None:
        if status not in _LISTED:
            raise ProblemError(400, "bad-query", "status must be scanning, ready or rejected")
        query = query.where(File.status == status)
    content_type = params.get("content_type")
    if content_type is not None:
        if len(content_type) > 255 or not content_type.isprintable():
            raise ProblemError(400, "bad-query", "content_type is not a media type")
        if content_type.endswith("/*"):
            query = query.where(File.content_type.startswith(content_type[:-1], autoescape=True))
        else:
            query = query.where(File.content_type == content_type.lower())
    name = params.get("name")
    if name is not None:
        if len(name) > 255 or not name.isprintable():
            raise ProblemError(400, "bad-query", "name must be printable, at most 255 characters")
        query = query.where(File.name.icontains(name, autoescape=True))
    for bound, compare in (
        ("created_after", File.created_at.__gt__),
        ("created_before", File.created_at.__lt__),
    ):
        raw = params.get(bound)
        if raw is not None:
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                raise ProblemError(400, "bad-query", f"{bound} must be an ISO 8601 time") from None
            if moment.tzinfo is None:
                raise ProblemError(400, "bad-query", f"{bound} needs a time zone")
            query = query.where(compare(moment))
    return query


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ProblemError(400, "bad-query", f"limit must be 1 to {MAX_PAGE}")
    return int(raw)


async def list_files(request: web.Request) -> web.Response:
    """The files the caller can read, newest first, by cursor."""
    claims = claims_of(request)
    limit = _limit(request)
    after = _cursor(request.query.get("cursor"))
    query = _filters(request, select(File).where(File.status.in_(_LISTED)))
    if after is not None:
        created, file_id = after
        query = query.where(
            or_(File.created_at < created, and_(File.created_at == created, File.id < file_id))
        )
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await require_permission(session, claims, permissions.FILES_READ)
        if not is_tenant_admin(claims):
            query = query.where(_readable(caller_id(claims)))
        rows: list[File] = list(
            (
                await session.scalars(
                    query.order_by(File.created_at.desc(), File.id.desc()).limit(limit + 1)
                )
            ).all()
        )
    page = rows[:limit]
    return web.json_response(
        {
            "items": [file_json(row) for row in page],
            "next_cursor": _next_cursor(page[-1]) if len(rows) > limit else None,
        }
    )


def file_json(row: File) -> dict[str, Any]:
    href = f"/v1/files/{row.id}"
    ready = row.status == FileStatus.READY.value
    return {
        "id": str(row.id),
        "name": row.name,
        "content_type": row.content_type,
        "size": row.size_bytes,
        "sha256": row.checksum_sha256,
        "status": row.status,
        "owner_id": str(row.created_by) if row.created_by else None,
        "processing": row.processing,
        "thumbnails": [
            {
                "size": thumb["size"],
                "width": thumb["width"],
                "height": thumb["height"],
                "content_type": thumb["content_type"],
                "href": f"{href}/thumbnails/{thumb['size']}",
            }
            for thumb in row.thumbnails
        ],
        "metadata": row.file_metadata,
        "analysis": row.analysis,
        "rejection": row.rejection,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "links": {"self": href, **({"content": f"{href}/content"} if ready else {})},
    }


async def _file(request: web.Request, *, ready: bool) -> File:
    claims = claims_of(request)
    file_id = parse_uuid(request.match_info["id"], "file")
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await require_permission(session, claims, permissions.FILES_READ)
        return await require_file(session, claims, file_id, Access.VIEW, ready=ready)


async def get_file(request: web.Request) -> web.Response:
    return web.json_response(file_json(await _file(request, ready=False)))


async def file_content(request: web.Request) -> web.StreamResponse:
    row = await _file(request, ready=True)
    store = request.app[STORES].get(row.storage_provider)
    return await stream_object(
        request,
        store,
        row.storage_key,
        size=row.size_bytes,
        content_type=row.content_type,
        etag=row.checksum_sha256,
        download_name=row.name,
    )


async def file_thumbnail(request: web.Request) -> web.StreamResponse:
    row = await _file(request, ready=True)
    size = request.match_info["size"]
    match = next((t for t in row.thumbnails if str(t["size"]) == size), None)
    if match is None:
        if row.processing.get("thumbnails") == "pending":
            raise ProblemError(
                404,
                "thumbnail-pending",
                "the thumbnails are still being made",
                headers={"Retry-After": "10"},
            )
        raise ProblemError(404, "not-found", "no thumbnail of that size")
    store = request.app[STORES].get(row.storage_provider)
    return await stream_object(
        request,
        store,
        match["key"],
        size=int(match["bytes"]),
        content_type=match["content_type"],
        etag=f"{row.checksum_sha256}-{size}",
        download_name=None,
    )


_FILE_PARAM = {**UUID_ID_PARAM}
_TIME = {"type": "string", "format": "date-time"}
_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "content_type", "size", "status", "created_at", "links"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "content_type": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "sha256": {"type": ["string", "null"]},
        "status": {"enum": sorted(_LISTED)},
        "owner_id": {"type": ["string", "null"], "format": "uuid"},
        "processing": {"type": "object"},
        "thumbnails": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["size", "href"],
                "properties": {
                    "size": {"type": "integer"},
                    "width": {"type": "integer"},
                    "height": {"type": "integer"},
                    "content_type": {"type": "string"},
                    "href": {"type": "string"},
                },
            },
        },
        "metadata": {"type": ["object", "null"]},
        "analysis": {"type": ["object", "null"]},
        "rejection": {"type": ["object", "string", "null"]},
        "created_at": _TIME,
        "updated_at": _TIME,
        "links": {
            "type": "object",
            "required": ["self"],
            "properties": {"self": {"type": "string"}, "content": {"type": "string"}},
        },
    },
}
_UPLOAD = {
    "summary": "Upload a file (file_upload_workflow): a raw body with its Content-Type and "
    "?name=, or multipart/form-data with one part named 'file'",
    "operationId": "uploadFile",
    WORKFLOW_EXTENSION: FILE_UPLOAD_WORKFLOW,
    "parameters": [
        PREFER,
        {"name": "name", "in": "query", "schema": {"type": "string", "maxLength": 255}},
        {
            "name": "Idempotency-Key",
            "in": "header",
            "description": "A retry with the same key gets the first request's operation",
            "schema": {"type": "string", "maxLength": 200},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "*/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": OPERATION,
        "202": OPERATION_STARTED,
        **errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
    },
}
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/files": {
        "post": _UPLOAD,
        "get": {
            "summary": "The files the caller can read, newest first, paginated by cursor",
            "operationId": "listFiles",
            "parameters": [
                {"name": name, "in": "query", "schema": schema}
                for name, schema in (
                    ("status", {"enum": sorted(_LISTED)}),
                    ("content_type", {"type": "string"}),
                    ("name", {"type": "string"}),
                    ("created_after", {"type": "string", "format": "date-time"}),
                    ("created_before", {"type": "string", "format": "date-time"}),
                    ("cursor", {"type": "string"}),
                    ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                )
            ],
            "responses": {
                "200": json_response(
                    "A page of files",
                    {
                        "type": "object",
                        "required": ["items", "next_cursor"],
                        "properties": {
                            "items": {"type": "array", "items": _FILE_SCHEMA},
                            "next_cursor": {"type": ["string", "null"]},
                        },
                    },
                ),
                **errors(400, 401, 403),
            },
        },
    },
    "/v1/files/{id}": {
        "get": {
            "summary": "A file: its state, metadata, thumbnails and analysis",
            "operationId": "getFile",
            "parameters": [_FILE_PARAM],
            "responses": {
                "200": json_response("The file", _FILE_SCHEMA),
                **errors(401, 403, 404),
            },
        }
    },
    "/v1/files/{id}/content": {
        "get": {
            "summary": "The file's bytes, streamed; one byte range with Range",
            "operationId": "getFileContent",
            "parameters": [_FILE_PARAM, *DOWNLOAD_PARAMETERS],
            "responses": {
                **download_responses("The bytes, with the file's content type"),
                **errors(401, 403, 404, 409),
            },
        }
    },
    "/v1/files/{id}/thumbnails/{size}": {
        "get": {
            "summary": "A thumbnail of the file, by its size in pixels",
            "operationId": "getFileThumbnail",
            "parameters": [
                _FILE_PARAM,
                {"name": "size", "in": "path", "required": True, "schema": {"type": "integer"}},
                *DOWNLOAD_PARAMETERS,
            ],
            "responses": {
                **download_responses("The thumbnail"),
                **errors(401, 403, 404, 409),
            },
        }
    },
}
OPENAPI_MODELS: tuple[Any, ...] = ()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{id}", get_file)
    app.router.add_get("/v1/files/{id}/content", file_content)
    app.router.add_get("/v1/files/{id}/thumbnails/{size}", file_thumbnail)
