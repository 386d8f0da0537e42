"""File shares: grants to users and groups of the tenant, and links.

- ``POST /v1/files/{id}/shares`` starts file_sharing_workflow: 202 with the operation, or
  200 with ``Prefer: wait=N``. A retried POST with the same ``Idempotency-Key`` names the
  same share and joins the same workflow.
- ``GET /v1/files/{id}/shares`` lists the file's live shares (never a hash).
- ``DELETE /v1/files/{id}/shares/{share_id}`` revokes at once (a direct write): the share's
  creator, the file's owner or a tenant admin.
- ``GET /s/{token}`` serves a link, without a bearer token; a password-protected link asks
  for HTTP Basic (any user name, the link's password).

Only hashes are stored: SHA-256 of the link token (a lookup key with 256 bits of entropy
needs no slow hash) and argon2id of the password. The token reaches the sharer once, in the
workflow's result, which the payload codec encrypts. Expiry is checked on every access.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import re
import secrets
import time
import uuid
from collections import OrderedDict, deque
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)
from sqlalchemy import delete, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from adx_api.file_access import (
    Access,
    access_to,
    caller_id,
    is_tenant_admin,
    require_file,
    require_permission,
)
from adx_api.keys import SESSIONS, SETTINGS, STORES, TEMPORAL, claims_of, context_of
from adx_api.openapi_parts import (
    DOWNLOAD_PARAMETERS,
    PREFER,
    download_responses,
    errors,
    json_response,
    workflow_post,
)
from adx_api.operations import Operations, search_attributes
from adx_api.problems import ProblemError
from adx_api.routes.common import (
    existing_operation,
    idempotency_key,
    operation_response,
    parse_uuid,
    read_json,
)
from adx_api.routes.tenants import Email
from adx_api.streaming import stream_object
from adx_core.auth import Claims
from adx_core.contracts.files import (
    FILE_SHARING_WORKFLOW,
    FileShareRequest,
    FileStatus,
    PrincipalKind,
    ShareGrantee,
    ShareRole,
    sharing_workflow_id,
)
from adx_core.contracts.permissions import FILES_READ, FILES_SHARE
from adx_core.contracts.storage import FILES_TASK_QUEUE
from adx_core.db.engine import tenant_session
from adx_core.db.models import AuditEntry, File, FilePermission, FileShare
from adx_core.logging import get_logger
from adx_core.metrics import WORKFLOWS_STARTED
from adx_core.storage import StorageNotConfiguredError, tenant_prefix

log = get_logger(__name__)

MAX_GRANTEES = 50
MAX_NOTIFY = 20
MAX_SHARE_DAYS = 90
MAX_LIST = 500
# Wrong passwords allowed per link and window before the link answers 429.
PASSWORD_FAILURES = 10
PASSWORD_WINDOW_SECONDS = 60.0
# argon2id takes 64 MiB per check: at most this many run at once in a process.
_ARGON2_SLOTS = 2
_HASHER = PasswordHasher()
# Printable ASCII without spaces: keys end up (digested) in ids and logs.
# What secrets.token_urlsafe(32) makes; anything else cannot be a link.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_SHARE_NAMESPACE = uuid.UUID("0c5f3a52-8d4e-4f0b-9b7e-2f4d61c0a7e3")
BASIC_CHALLENGE = 'Basic realm="shared file"'

Password = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ShareMessage = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


class GranteeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["user", "group"]
    id: uuid.UUID


class ShareIn(BaseModel):
    """Either ``grantees`` (users and groups of the tenant) or ``link: true``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    grantees: list[GranteeIn] | None = Field(default=None, min_length=1, max_length=MAX_GRANTEES)
    link: StrictBool = False
    role: Literal["viewer", "editor"] = "viewer"
    # Required for a link (one of the two), optional for grants.
    expires_at: AwareDatetime | None = None
    expires_in_seconds: int | None = Field(
        default=None, strict=True, ge=1, le=MAX_SHARE_DAYS * 86_400
    )
    # Links only.
    password: Password | None = None
    notify: list[Email] = Field(default_factory=list, max_length=MAX_NOTIFY)
    message: ShareMessage | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ShareIn:
        if self.link == (self.grantees is not None):
            raise ValueError("give either grantees or link: true")
        if self.grantees is not None:
            if len({(g.kind, g.id) for g in self.grantees}) != len(self.grantees):
                raise ValueError("the grantees must be distinct")
            if self.password is not None or self.notify:
                raise ValueError("password and notify are for links only")
        if self.link:
            if self.role != "viewer":
                raise ValueError("a link gives read access only: its role is viewer")
            if self.expires_at is None and self.expires_in_seconds is None:
                raise ValueError("a link needs expires_at or expires_in_seconds")
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("give expires_at or expires_in_seconds, not both")
        if self.expires_at is not None:
            now = datetime.now(UTC)
            if self.expires_at <= now:
                raise ValueError("expires_at must be in the future")
            if self.expires_at > now + timedelta(days=MAX_SHARE_DAYS):
                raise ValueError(f"expires_at may be at most {MAX_SHARE_DAYS} days ahead")
        return self

    def expiry(self) -> datetime | None:
        if self.expires_in_seconds is not None:
            return datetime.now(UTC) + timedelta(seconds=self.expires_in_seconds)
        return self.expires_at


# --- the per-process state of link serving ----------------------------------------------


class PasswordFailures:
    """Wrong passwords per link in a sliding window, in this process. Bounded: the oldest
    links are forgotten first."""

    def __init__(
        self,
        limit: int = PASSWORD_FAILURES,
        window: float = PASSWORD_WINDOW_SECONDS,
        max_links: int = 10_000,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_links = max_links
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, link: str) -> int | None:
        """Seconds until the link may be tried again, or ``None`` if it may be now."""
        failures = self._recent(link)
        if len(failures) < self._limit:
            return None
        return max(1, math.ceil(failures[0] + self._window - time.monotonic()))

    def failed(self, link: str) -> None:
        self._recent(link).append(time.monotonic())
        self._failures.move_to_end(link)
        while len(self._failures) > self._max_links:
            self._failures.popitem(last=False)

    def _recent(self, link: str) -> deque[float]:
        failures = self._failures.setdefault(link, deque())
        cutoff = time.monotonic() - self._window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures


class LinkServing:
    """What ``GET /s/{token}`` keeps per application: the wrong-password limiter and the
    argon2 slots."""

    def __init__(self) -> None:
        self.failures = PasswordFailures()
        self.argon2 = asyncio.Semaphore(_ARGON2_SLOTS)


LINKS = web.AppKey("share_links", LinkServing)


# --- creating, listing and revoking shares ----------------------------------------------


def share_id_for_key(tenant_id: str, user_id: uuid.UUID, file_id: uuid.UUID, key: str) -> str:
    """The share a retried POST with the same key names: one per tenant, user, file and
    key, so that two users' (or two files') keys never collide."""
    return str(uuid.uuid5(_SHARE_NAMESPACE, f"{tenant_id}\x00{user_id}\x00{file_id}\x00{key}"))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


async def _share_request(
    body: ShareIn, tenant_id: str, file_id: uuid.UUID, sharer: uuid.UUID, share_id: str
) -> FileShareRequest:
    token_hash = link_path = password_hash = None
    if body.link:
        token = secrets.token_urlsafe(32)
        token_hash, link_path = _token_hash(token), f"/s/{token}"
        if body.password is not None:
            password_hash = await asyncio.to_thread(_HASHER.hash, body.password)
    return FileShareRequest(
        tenant_id=tenant_id,
        file_id=str(file_id),
        share_id=share_id,
        sharer_id=str(sharer),
        role=ShareRole(body.role),
        grantees=[ShareGrantee(PrincipalKind(g.kind), str(g.id)) for g in body.grantees or []],
        link=body.link,
        expires_at=body.expiry(),
        token_hash=token_hash,
        password_hash=password_hash,
        link_path=link_path,
        notify_emails=sorted(set(body.notify)),
        message=body.message,
    )


async def _start(
    request: web.Request, share: FileShareRequest, workflow_id: str, key: str | None
) -> web.Response:
    claims = claims_of(request)
    client: Client = request.app[TEMPORAL]
    handle: WorkflowHandle[Any, Any]
    try:
        handle = await client.start_workflow(
            FILE_SHARING_WORKFLOW,
            share,
            id=workflow_id,
            task_queue=request.app[SETTINGS].task_queue(FILES_TASK_QUEUE),
            search_attributes=search_attributes(
                claims.tenant_id, context_of(request).correlation_id
            ),
            memo={"subject_tenant_id": claims.tenant_id, "requested_by": claims.user_id},
            # With a key, a concurrent retry joins the running workflow; a finished one is
            # never started again: its share (and link token) already exist.
            id_conflict_policy=(
                WorkflowIDConflictPolicy.USE_EXISTING
                if key is not None
                else WorkflowIDConflictPolicy.FAIL
            ),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        WORKFLOWS_STARTED.labels(FILE_SHARING_WORKFLOW).inc()
    except WorkflowAlreadyStartedError:
        if key is None:  # a fresh uuid4: a bug, not a user error
            raise ProblemError(409, "conflict", "the share already exists") from None
        handle = client.get_workflow_handle(workflow_id)
    return await operation_response(request, Operations(client), handle, FILE_SHARING_WORKFLOW)


async def create_share(request: web.Request) -> web.Response:
    claims = claims_of(request)
    file_id = parse_uuid(request.match_info["id"], "file")
    key = idempotency_key(request)
    body = await read_json(request, ShareIn)
    sharer = caller_id(claims)
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await require_permission(session, claims, FILES_SHARE)
        await require_file(session, claims, file_id, Access.EDIT)
    share_id = (
        share_id_for_key(claims.tenant_id, sharer, file_id, key)
        if key is not None
        else str(uuid.uuid4())
    )
    workflow_id = sharing_workflow_id(share_id)
    if key is not None and (existing := await existing_operation(request, workflow_id)):
        return existing
    share = await _share_request(body, claims.tenant_id, file_id, sharer, share_id)
    return await _start(request, share, workflow_id, key)


def _share_json(share: FileShare) -> dict[str, Any]:
    return {
        "id": str(share.id),
        "file_id": str(share.file_id),
        "kind": share.kind,
        "role": share.role,
        "grantees": share.grantees,
        "password_protected": share.password_hash is not None,
        "expires_at": share.expires_at.isoformat() if share.expires_at else None,
        "created_by": str(share.created_by) if share.created_by else None,
        "created_at": share.created_at.isoformat(),
    }


async def list_shares(request: web.Request) -> web.Response:
    """Who else can reach the file: for those who may share it themselves."""
    claims = claims_of(request)
    file_id = parse_uuid(request.match_info["id"], "file")
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await require_permission(session, claims, FILES_READ)
        await require_file(session, claims, file_id, Access.EDIT, ready=False)
        shares = await session.scalars(
            select(FileShare)
            .where(
                FileShare.file_id == file_id,
                FileShare.revoked_at.is_(None),
                or_(FileShare.expires_at.is_(None), FileShare.expires_at > datetime.now(UTC)),
            )
            .order_by(FileShare.created_at.desc(), FileShare.id)
            .limit(MAX_LIST)
        )
        body = {"shares": [_share_json(share) for share in shares.all()]}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _may_revoke(
    session: AsyncSession, claims: Claims, file_id: uuid.UUID, share: FileShare
) -> bool:
    if is_tenant_admin(claims):
        return True
    caller = caller_id(claims)
    return share.created_by == caller or await access_to(session, file_id, caller) == Access.OWN


async def revoke_share(request: web.Request) -> web.Response:
    """Revoke at once: the share is marked and its grants deleted in one transaction, so
    the next access (a grant checked by require_file, or the link) is refused."""
    claims = claims_of(request)
    file_id = parse_uuid(request.match_info["id"], "file")
    share_id = parse_uuid(request.match_info["share_id"], "share")
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        await require_file(session, claims, file_id, Access.VIEW, ready=False)
        share = await session.get(FileShare, share_id, with_for_update=True)
        if share is None or share.file_id != file_id:
            raise ProblemError(404, "not-found", "no such share")
        if not await _may_revoke(session, claims, file_id, share):
            raise ProblemError(
                403,
                "forbidden",
                "only the share's creator, the file's owner or a tenant admin may revoke it",
            )
        if share.revoked_at is None:
            share.revoked_at = datetime.now(UTC)
            session.add(
                AuditEntry(
                    tenant_id=share.tenant_id,
                    actor_id=claims.user_id,
                    action="file.share_revoked",
                    subject=str(file_id),
                    correlation_id=context_of(request).correlation_id,
                    details={"share_id": str(share_id)},
                )
            )
        await session.execute(delete(FilePermission).where(FilePermission.share_id == share_id))
    return web.Response(status=204)


# --- serving a link ---------------------------------------------------------------------


def _basic_password(request: web.Request) -> str | None:
    """The password of an HTTP Basic ``Authorization`` header (any user name), ``""`` for
    a malformed one, ``None`` when none was sent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def _password_problem(status: int, detail: str, headers: dict[str, str]) -> ProblemError:
    kind = "unauthenticated" if status == 401 else "too-many-requests"
    return ProblemError(status, kind, detail, headers=headers)


async def _check_password(request: web.Request, token_hash: str, password_hash: str) -> None:
    serving = request.app[LINKS]
    retry_after = serving.failures.retry_after(token_hash)
    if retry_after is not None:
        raise _password_problem(
            429, "too many wrong passwords; try again later", {"Retry-After": str(retry_after)}
        )
    given = _basic_password(request)
    challenge = {"WWW-Authenticate": BASIC_CHALLENGE}
    if given is None:
        raise _password_problem(401, "this link needs its password", challenge)
    async with serving.argon2:
        try:
            await asyncio.to_thread(_HASHER.verify, password_hash, given)
            return
        except (VerificationError, InvalidHashError):
            pass
    serving.failures.failed(token_hash)
    raise _password_problem(401, "the password is wrong", challenge)


async def _linked_file(request: web.Request, token_hash: str) -> tuple[File, str | None]:
    """The file a live link names, and the link's password hash."""
    sessions = request.app[SESSIONS]
    # No tenant scope yet: a SECURITY DEFINER function maps the hash to its tenant and
    # nothing else; every row is then read under that tenant's RLS.
    async with sessions() as session:
        tenant_id = await session.scalar(
            text("SELECT adx_tenant_of_share_token(:hash)"), {"hash": token_hash}
        )
    if not isinstance(tenant_id, uuid.UUID):
        raise ProblemError(404, "not-found", "no such link")
    async with tenant_session(sessions, tenant_id) as session:
        share = await session.scalar(
            select(FileShare).where(FileShare.token_hash == token_hash, FileShare.kind == "link")
        )
        if share is None or share.revoked_at is not None:
            raise ProblemError(404, "not-found", "no such link")
        if share.expires_at is not None and share.expires_at <= datetime.now(UTC):
            raise ProblemError(410, "gone", "this link has expired", title="Gone")
        file = await session.get(File, share.file_id)
    if file is None or file.status != FileStatus.READY.value:
        raise ProblemError(404, "not-found", "no such link")
    if not file.storage_key.startswith(tenant_prefix(tenant_id)):
        log.error("file record outside its tenant's prefix", file_id=str(file.id))
        raise ProblemError(404, "not-found", "no such link")
    return file, share.password_hash


async def serve_link(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    if not _TOKEN.match(token):
        raise ProblemError(404, "not-found", "no such link")
    token_hash = _token_hash(token)
    file, password_hash = await _linked_file(request, token_hash)
    if password_hash is not None:
        await _check_password(request, token_hash, password_hash)
    try:
        store = request.app[STORES].get(file.storage_provider)
    except StorageNotConfiguredError:
        log.error("storage provider not configured", provider=file.storage_provider)
        raise ProblemError(
            503, "unavailable", "the file's storage is not reachable", headers={"Retry-After": "5"}
        ) from None
    return await stream_object(
        request,
        store,
        file.storage_key,
        size=file.size_bytes,
        content_type=file.content_type,
        etag=file.checksum_sha256,
        download_name=file.name,
        # A link may be revoked or expire at any moment: nothing may keep a copy.
        cache="private, no-store",
    )


# --- OpenAPI ----------------------------------------------------------------------------

_FILE_ID_PARAM: dict[str, Any] = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_SHARE_ID_PARAM: dict[str, Any] = {
    "name": "share_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_IDEMPOTENCY_PARAM: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "A retried POST with the same key names the same share and operation",
    "schema": {"type": "string", "maxLength": 200},
}
_SHARE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "file_id", "kind", "role", "grantees", "password_protected"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "file_id": {"type": "string", "format": "uuid"},
        "kind": {"enum": ["grant", "link"]},
        "role": {"enum": ["viewer", "editor"]},
        "grantees": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["user", "group"]},
                    "id": {"type": "string", "format": "uuid"},
                },
            },
        },
        "password_protected": {"type": "boolean"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "created_by": {"type": ["string", "null"], "format": "uuid"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}


def _create_spec() -> dict[str, Any]:
    spec = workflow_post(
        "Share a ready file (file_sharing_workflow): grants to users or groups of the tenant, "
        "or a link with an expiry and an optional password. The result's `link` is the "
        "link's path, given only here. Needs files.share and owner or editor access",
        "createFileShare",
        "ShareIn",
        400,
        401,
        403,
        404,
        409,
        413,
        415,
        422,
    )
    spec["parameters"] = [_FILE_ID_PARAM, PREFER, _IDEMPOTENCY_PARAM]
    return spec


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/files/{id}/shares": {
        "post": _create_spec(),
        "get": {
            "summary": "The file's live shares (never a hash or a token); for its owners "
            "and editors",
            "operationId": "listFileShares",
            "parameters": [_FILE_ID_PARAM],
            "responses": {
                "200": json_response(
                    "The shares",
                    {
                        "type": "object",
                        "required": ["shares"],
                        "properties": {"shares": {"type": "array", "items": _SHARE_SCHEMA}},
                    },
                ),
                **errors(401, 403, 404),
            },
        },
    },
    "/v1/files/{id}/shares/{share_id}": {
        "delete": {
            "summary": "Revoke a share at once; the share's creator, the file's owner or a "
            "tenant admin",
            "operationId": "revokeFileShare",
            "parameters": [_FILE_ID_PARAM, _SHARE_ID_PARAM],
            "responses": {"204": {"description": "Revoked"}, **errors(401, 403, 404)},
        }
    },
    "/s/{token}": {
        "get": {
            "summary": "Download a shared file through its link; no bearer token. A "
            "password-protected link answers 401 with a Basic challenge: send any user name "
            "and the link's password",
            "operationId": "getSharedFile",
            # No bearer token; a password-protected link takes the password as Basic auth.
            "security": [{}, {"linkPassword": []}],
            "parameters": [
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
                },
                *DOWNLOAD_PARAMETERS,
            ],
            "responses": {
                **download_responses("The file, as an attachment, with its own content type"),
                **errors(401, 404, 410, 429, 503),
            },
        }
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (ShareIn,)


def add_routes(app: web.Application) -> None:
    app[LINKS] = LinkServing()
    app.router.add_post("/v1/files/{id}/shares", create_share)
    app.router.add_get("/v1/files/{id}/shares", list_shares)
    app.router.add_delete("/v1/files/{id}/shares/{share_id}", revoke_share)
    app.router.add_get("/s/{token}", serve_link, allow_head=False)
