"""Resumable uploads, speaking the tus 1.0 protocol (core, creation, termination and
expiration), so tus-js-client and Uppy work as they are.

No maintained tus server exists for aiohttp (aiohttp-tus had its last release in 2022), so
this is our own, on our storage providers, none of which can append to an object. A PATCH
body is therefore kept as segments of ``ADX_UPLOAD_SEGMENT_BYTES``: each segment is stored
as its own object in quarantine and then acknowledged in the database, in that order. The
offset a client reads back (HEAD) is the end of the last acknowledged segment, so a dropped
connection loses at most one segment and the client resumes from there. When the last byte
arrives, file_upload_workflow starts with the segments; its first step joins them.

    POST   /v1/uploads         Upload-Length, Upload-Metadata (filename, filetype) → 201
    HEAD   /v1/uploads/{id}    → Upload-Offset, Upload-Length
    PATCH  /v1/uploads/{id}    Upload-Offset, application/offset+octet-stream → 204
    GET    /v1/uploads/{id}    the session as JSON, with its operation once complete
    DELETE /v1/uploads/{id}    drop an unfinished upload → 204
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from aiohttp import StreamReader, web
from sqlalchemy import delete, select, update

from adx_api.file_access import caller_id
from adx_api.keys import SESSIONS, SETTINGS, STORES, claims_of
from adx_api.openapi_parts import errors, header_ref, json_response
from adx_api.problems import ProblemError
from adx_api.routes.common import idempotency_key, parse_uuid
from adx_api.uploading import (
    READ_CHUNK,
    MeteredBody,
    discard,
    file_name,
    media_type,
    new_file_id,
    start_upload,
    store_body,
    too_large,
    uploader,
)
from adx_core.contracts.files import UploadPart as PartRef
from adx_core.contracts.files import quarantine_prefix, upload_workflow_id
from adx_core.contracts.storage import ObjectLocation
from adx_core.db.engine import tenant_session
from adx_core.db.models import UploadPart, UploadSession

TUS_VERSION = "1.0.0"
TUS_HEADERS = {"Tus-Resumable": TUS_VERSION}
OFFSET_TYPE = "application/offset+octet-stream"
# Expired sessions the API clears when a new one is made: bounded work per request.
_SWEEP = 10


def _tus(**extra: str) -> dict[str, str]:
    return {**TUS_HEADERS, "Cache-Control": "no-store", **extra}


def _metadata(header: str | None) -> dict[str, str]:
    """tus Upload-Metadata: ``key base64value`` pairs, comma-separated."""
    values: dict[str, str] = {}
    if not header:
        return values
    if len(header) > 4096:
        raise ProblemError(400, "bad-request", "Upload-Metadata is too long")
    for item in header.split(","):
        key, _, encoded = item.strip().partition(" ")
        if not key:
            continue
        try:
            values[key] = (
                base64.b64decode(encoded, validate=True).decode("utf-8") if encoded else ""
            )
        except (binascii.Error, UnicodeDecodeError):
            raise ProblemError(
                400, "bad-request", f"Upload-Metadata {key!r} is not base64 UTF-8"
            ) from None
    return values


def _length(header: str | None) -> int:
    if header is None or not header.isdigit() or len(header) > 19:
        raise ProblemError(400, "bad-request", "Upload-Length must be the size in bytes")
    return int(header)


async def create_upload(request: web.Request) -> web.Response:
    claims = claims_of(request)
    who = await uploader(request)
    length = _length(request.headers.get("Upload-Length"))
    if length == 0:
        raise ProblemError(400, "bad-request", "an empty file needs no resumable upload")
    if length > who.max_file_bytes:
        raise too_large(who.max_file_bytes)
    meta = _metadata(request.headers.get("Upload-Metadata"))
    name = file_name(meta.get("filename") or request.query.get("name"))
    declared = media_type(meta.get("filetype"))
    key = idempotency_key(request)
    file_id = new_file_id(claims, key)
    # The session is the file's: a retried create (same Idempotency-Key) finds it again.
    upload_id = uuid.uuid5(uuid.UUID(file_id), "upload")
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=request.app[SETTINGS].upload_session_ttl_seconds)
    async with tenant_session(request.app[SESSIONS], who.tenant_id) as session:
        row = await session.get(UploadSession, upload_id)
        if row is None:
            row = UploadSession(
                id=upload_id,
                tenant_id=uuid.UUID(who.tenant_id),
                owner_id=who.owner_id,
                file_id=uuid.UUID(file_id),
                name=name,
                content_type=declared,
                length=length,
                received=0,
                provider=who.provider,
                status="open",
                expires_at=expires,
            )
            session.add(row)
        elif row.length != length or row.owner_id != who.owner_id:
            raise ProblemError(409, "conflict", "this Idempotency-Key named another upload")
    await _sweep(request, who.tenant_id, now)
    location = f"/v1/uploads/{upload_id}"
    return web.json_response(
        _session_json(row),
        status=201,
        headers=_tus(
            Location=location, **{"Upload-Expires": format_datetime(row.expires_at, usegmt=True)}
        ),
    )


async def _sweep(request: web.Request, tenant_id: str, now: datetime) -> None:
    """Remove a few expired, unfinished sessions and their segments."""
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        stale = (
            await session.scalars(
                select(UploadSession)
                .where(UploadSession.status == "open", UploadSession.expires_at < now)
                .limit(_SWEEP)
            )
        ).all()
    for row in stale:
        await _drop(request, row)


async def _drop(request: web.Request, row: UploadSession) -> None:
    store = request.app[STORES].get(row.provider)
    async with tenant_session(request.app[SESSIONS], row.tenant_id) as session:
        keys = (
            await session.scalars(select(UploadPart.key).where(UploadPart.upload_id == row.id))
        ).all()
    for key in keys:
        await discard(store, key)
    async with tenant_session(request.app[SESSIONS], row.tenant_id) as session:
        await session.execute(
            update(UploadSession)
            .where(UploadSession.id == row.id, UploadSession.status == "open")
            .values(status="cancelled")
        )
        await session.execute(delete(UploadPart).where(UploadPart.upload_id == row.id))


async def _own_session(request: web.Request) -> UploadSession:
    """The caller's own upload; anyone else's (or another tenant's) is a 404."""
    claims = claims_of(request)
    upload_id = parse_uuid(request.match_info["id"], "upload")
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        row = await session.get(UploadSession, upload_id)
    if row is None or row.owner_id != caller_id(claims) or row.status == "cancelled":
        raise ProblemError(404, "not-found", "no such upload", headers=TUS_HEADERS)
    return row


def _expired(row: UploadSession) -> bool:
    return row.status == "open" and row.expires_at < datetime.now(UTC)


async def upload_offset(request: web.Request) -> web.Response:
    row = await _own_session(request)
    if _expired(row):
        raise ProblemError(410, "gone", "the upload expired", headers=TUS_HEADERS)
    return web.Response(
        status=200,
        headers=_tus(
            **{"Upload-Offset": str(row.received), "Upload-Length": str(row.length)},
            **_operation_link(row),
        ),
    )


def _operation_link(row: UploadSession) -> dict[str, str]:
    if row.operation_id is None:
        return {}
    return {"Link": f'</v1/operations/{row.operation_id}>; rel="operation"'}


async def get_upload(request: web.Request) -> web.Response:
    return web.json_response(_session_json(await _own_session(request)), headers=TUS_HEADERS)


def _session_json(row: UploadSession) -> dict[str, Any]:
    href = f"/v1/uploads/{row.id}"
    links = {"self": href}
    if row.operation_id:
        links["operation"] = f"/v1/operations/{row.operation_id}"
    return {
        "id": str(row.id),
        "file_id": str(row.file_id),
        "name": row.name,
        "content_type": row.content_type,
        "length": row.length,
        "offset": row.received,
        "status": row.status,
        "expires_at": row.expires_at.isoformat(),
        "links": links,
    }


async def _segments(content: StreamReader, size: int) -> AsyncIterator[AsyncIterator[bytes]]:
    """The body as consecutive streams of at most ``size`` bytes each."""
    while True:
        first = await content.read(min(READ_CHUNK, size))
        if not first:
            return
        budget = size - len(first)

        async def segment(first: bytes = first, budget: int = budget) -> AsyncIterator[bytes]:
            yield first
            while budget > 0:
                chunk = await content.read(min(READ_CHUNK, budget))
                if not chunk:
                    return
                budget -= len(chunk)
                yield chunk

        yield segment()


async def append(request: web.Request) -> web.Response:
    """Store the body from the acknowledged offset on, segment by segment."""
    row = await _own_session(request)
    if request.content_type != OFFSET_TYPE:
        raise ProblemError(415, "unsupported-media-type", f"send the bytes as {OFFSET_TYPE}")
    offset = request.headers.get("Upload-Offset")
    if offset is None or not offset.isdigit():
        raise ProblemError(400, "bad-request", "Upload-Offset must be a byte offset")
    if _expired(row):
        raise ProblemError(410, "gone", "the upload expired", headers=TUS_HEADERS)
    if row.status != "open":
        raise ProblemError(
            409, "conflict", "the upload is complete", headers=_tus(**_operation_link(row))
        )
    if int(offset) != row.received:
        raise ProblemError(
            409,
            "conflict",
            f"the upload is at offset {row.received}",
            headers=_tus(**{"Upload-Offset": str(row.received)}),
            offset=row.received,
        )
    settings = request.app[SETTINGS]
    store = request.app[STORES].get(row.provider)
    remaining = row.length - row.received
    received = row.received
    async for segment in _segments(request.content, settings.upload_segment_bytes):
        if remaining <= 0:
            raise too_large(row.length)
        key = f"{quarantine_prefix(str(row.tenant_id), str(row.file_id))}parts/{received:020d}"
        body = MeteredBody(segment, remaining)
        await store_body(store, key, body, row.content_type, row.length)
        received = await _acknowledge(request, row, received, body, key)
        remaining = row.length - received
    headers = _tus(**{"Upload-Offset": str(received)})
    if received == row.length:
        headers.update(await _complete(request, row))
    return web.Response(status=204, headers=headers)


async def _acknowledge(
    request: web.Request, row: UploadSession, at: int, body: MeteredBody, key: str
) -> int:
    """Record a stored segment and move the offset, only if nobody else moved it first."""
    now = datetime.now(UTC)
    ttl = timedelta(seconds=request.app[SETTINGS].upload_session_ttl_seconds)
    async with tenant_session(request.app[SESSIONS], row.tenant_id) as session:
        moved = await session.execute(
            update(UploadSession)
            .where(
                UploadSession.id == row.id,
                UploadSession.received == at,
                UploadSession.status == "open",
            )
            .values(received=at + body.size, expires_at=now + ttl)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            await session.rollback()
            await discard(request.app[STORES].get(row.provider), key)
            raise ProblemError(409, "conflict", "another request is writing this upload")
        session.add(
            UploadPart(
                upload_id=row.id,
                offset=at,
                tenant_id=row.tenant_id,
                size=body.size,
                sha256=body.digest.hexdigest(),
                key=key,
            )
        )
    return at + body.size


async def _complete(request: web.Request, row: UploadSession) -> dict[str, str]:
    """Every byte is in: start file_upload_workflow with the segments."""
    who = await uploader(request)
    async with tenant_session(request.app[SESSIONS], row.tenant_id) as session:
        parts = (
            await session.scalars(
                select(UploadPart).where(UploadPart.upload_id == row.id).order_by(UploadPart.offset)
            )
        ).all()
    staged = ObjectLocation(
        row.provider, f"{quarantine_prefix(str(row.tenant_id), str(row.file_id))}assembled"
    )
    answer = await start_upload(
        request,
        who,
        file_id=str(row.file_id),
        name=row.name,
        declared_type=row.content_type,
        staged=staged,
        size=row.length,
        sha256=None,
        parts=[PartRef(key=p.key, offset=p.offset, size=p.size, sha256=p.sha256) for p in parts],
        upload_id=str(row.id),
    )
    operation_id = upload_workflow_id(str(row.file_id))
    async with tenant_session(request.app[SESSIONS], row.tenant_id) as session:
        await session.execute(
            update(UploadSession)
            .where(UploadSession.id == row.id)
            .values(status="complete", operation_id=operation_id)
        )
    row.operation_id = operation_id
    return {**_operation_link(row), "Location": answer.headers["Location"]}


async def delete_upload(request: web.Request) -> web.Response:
    row = await _own_session(request)
    if row.status != "open":
        raise ProblemError(409, "conflict", "the upload is complete; it is a file now")
    await _drop(request, row)
    return web.Response(status=204, headers=TUS_HEADERS)


async def tus_options(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers={
            **TUS_HEADERS,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": "creation,termination,expiration",
            "Tus-Max-Size": str(request.app[SETTINGS].scan_max_bytes),
        },
    )


_SESSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "file_id", "name", "length", "offset", "status", "expires_at", "links"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "file_id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "content_type": {"type": ["string", "null"]},
        "length": {"type": "integer", "minimum": 1},
        "offset": {"type": "integer", "minimum": 0},
        "status": {"type": "string"},
        "expires_at": {"type": "string", "format": "date-time"},
        "links": {
            "type": "object",
            "required": ["self"],
            "properties": {"self": {"type": "string"}, "operation": {"type": "string"}},
        },
    },
}
_INTEGER = {"type": "integer", "minimum": 0}
_TUS_RESUMABLE = {"required": True, "schema": {"const": TUS_VERSION}}
_OFFSET = {"description": "Bytes received", "required": True, "schema": _INTEGER}
_LINK = {
    "description": 'Once the last byte is in: `</v1/operations/<id>>; rel="operation"`',
    "schema": {"type": "string"},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_TUS_HEADER = {"name": "Tus-Resumable", "in": "header", "schema": {"const": TUS_VERSION}}
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/uploads": {
        "post": {
            "summary": "Start a resumable upload (tus creation)",
            "operationId": "createUpload",
            "parameters": [
                _TUS_HEADER,
                {
                    "name": "Upload-Length",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                },
                {
                    "name": "Upload-Metadata",
                    "in": "header",
                    "description": "tus: `key base64value` pairs; `filename` and `filetype`",
                    "schema": {"type": "string", "maxLength": 4096},
                },
                {
                    "name": "name",
                    "in": "query",
                    "description": "The file's name, unless Upload-Metadata gives `filename`",
                    "schema": {"type": "string", "maxLength": 255},
                },
            ],
            "responses": {
                "201": {
                    **json_response("The upload session; Location names it", _SESSION_SCHEMA),
                    "headers": {
                        "Location": header_ref("Location"),
                        "Tus-Resumable": _TUS_RESUMABLE,
                        "Upload-Expires": {
                            "description": "When the session expires (HTTP date)",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    },
                },
                **errors(400, 401, 403, 404, 409, 413, 415, 422),
            },
        },
        "options": {
            "summary": "What this tus server supports",
            "operationId": "tusOptions",
            "security": [],
            "responses": {
                "204": {
                    "description": "The tus versions, extensions and largest upload",
                    "headers": {
                        "Tus-Resumable": _TUS_RESUMABLE,
                        "Tus-Version": {"required": True, "schema": {"const": TUS_VERSION}},
                        "Tus-Extension": {"required": True, "schema": {"type": "string"}},
                        "Tus-Max-Size": {"required": True, "schema": _INTEGER},
                    },
                }
            },
        },
    },
    "/v1/uploads/{id}": {
        "head": {
            "summary": "The acknowledged offset (tus)",
            "operationId": "uploadOffset",
            "parameters": [_ID, _TUS_HEADER],
            "responses": {
                "200": {
                    "description": "Upload-Offset and Upload-Length",
                    "headers": {
                        "Tus-Resumable": _TUS_RESUMABLE,
                        "Upload-Offset": _OFFSET,
                        "Upload-Length": {"required": True, "schema": _INTEGER},
                        "Link": _LINK,
                    },
                },
                **errors(401, 404, 410),
            },
        },
        "patch": {
            "summary": "Append bytes at Upload-Offset (tus); the last byte starts "
            "file_upload_workflow",
            "operationId": "appendUpload",
            "parameters": [
                _ID,
                _TUS_HEADER,
                {
                    "name": "Upload-Offset",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "integer"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {OFFSET_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": {
                "204": {
                    "description": "Stored; Upload-Offset is the new offset, and Link names "
                    "the operation once complete",
                    "headers": {
                        "Tus-Resumable": _TUS_RESUMABLE,
                        "Upload-Offset": _OFFSET,
                        "Link": _LINK,
                        "Location": {
                            "description": "Once the last byte is in: the operation",
                            "schema": {"type": "string"},
                        },
                    },
                },
                **errors(400, 401, 404, 409, 410, 413, 415, 503),
            },
        },
        "get": {
            "summary": "The upload session as JSON",
            "operationId": "getUpload",
            "parameters": [_ID],
            "responses": {
                "200": json_response("The session", _SESSION_SCHEMA),
                **errors(401, 404),
            },
        },
        "delete": {
            "summary": "Drop an unfinished upload (tus termination)",
            "operationId": "deleteUpload",
            "parameters": [_ID, _TUS_HEADER],
            "responses": {"204": {"description": "Dropped"}, **errors(401, 404, 409)},
        },
    },
}
OPENAPI_MODELS: tuple[Any, ...] = ()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/uploads", create_upload)
    app.router.add_route("OPTIONS", "/v1/uploads", tus_options)
    app.router.add_get("/v1/uploads/{id}", get_upload, allow_head=False)
    app.router.add_route("HEAD", "/v1/uploads/{id}", upload_offset)
    app.router.add_patch("/v1/uploads/{id}", append)
    app.router.add_delete("/v1/uploads/{id}", delete_upload)
