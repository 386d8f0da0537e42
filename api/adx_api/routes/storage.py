"""Storage: the providers a tenant can use, and migrations between them.

``POST /v1/storage/migrations`` starts file_migration_workflow for the caller's tenant (a
tenant admin), or for any tenant a platform admin names. One migration per tenant runs at a
time; a second is a 409. Progress streams from ``/v1/operations/{id}/events``, and
``/v1/operations/{id}/cancel`` rolls the migration back. ``GET /v1/storage/migrations``
lists the tenant's migrations with their outcome; ``GET /v1/storage/providers`` names the
providers this deployment has configured and the one the tenant's files are in.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import select

from adx_api.keys import SESSIONS, SETTINGS, claims_of
from adx_api.openapi_parts import errors, json_response, workflow_post
from adx_api.problems import ProblemError
from adx_api.routes.common import (
    read_json,
    require_permission,
    start_operation,
    tenant_in_reach,
)
from adx_core.auth import Claims
from adx_core.contracts.permissions import STORAGE_MIGRATE
from adx_core.contracts.storage import (
    FILE_MIGRATION_WORKFLOW,
    FILES_TASK_QUEUE,
    MAX_BATCH_SIZE,
    MAX_FALLBACK_TARGETS,
    MAX_PARALLELISM,
    FileMigrationRequest,
    migration_workflow_id,
)
from adx_core.contracts.tenants import TenantStatus
from adx_core.db.engine import tenant_session
from adx_core.db.models import StorageMigration, Tenant
from adx_core.settings import StorageKind
from adx_core.storage import UnsafeKeyError
from adx_core.storage.keys import validate_prefix

MAX_LIST = 100

Prefix = Annotated[str, StringConstraints(max_length=512)]


class StorageMigrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    target: StorageKind
    fallback_targets: list[StorageKind] = Field(
        default_factory=list, max_length=MAX_FALLBACK_TARGETS
    )
    # Default: the provider the tenant's files are in now.
    source: StorageKind | None = None
    # A folder inside the tenant's files ("invoices/2024/"); empty for all of them.
    prefix: Prefix = ""
    batch_size: int = Field(default=100, ge=1, le=MAX_BATCH_SIZE)
    parallelism: int = Field(default=8, ge=1, le=MAX_PARALLELISM)
    delete_source: bool = False
    target_attempts: int = Field(default=5, ge=1, le=20)
    # Platform admins only: the tenant whose files move (default: the caller's own).
    tenant_id: uuid.UUID | None = None

    @field_validator("prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        if value:
            try:
                validate_prefix(value)
            except UnsafeKeyError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("fallback_targets")
    @classmethod
    def _distinct(cls, value: list[StorageKind]) -> list[StorageKind]:
        if len(set(value)) != len(value):
            raise ValueError("fallback targets must be distinct")
        return value


def _subject(claims: Claims, body: StorageMigrationIn) -> uuid.UUID:
    if body.tenant_id is None:
        return uuid.UUID(claims.tenant_id)
    return tenant_in_reach(claims, str(body.tenant_id))


async def _live_tenant(request: web.Request, tenant_id: uuid.UUID) -> Tenant:
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None or tenant.status in (
        TenantStatus.FAILED.value,
        TenantStatus.DEPROVISIONED.value,
    ):
        raise ProblemError(404, "not-found", "no such tenant")
    if tenant.status != TenantStatus.ACTIVE.value:
        raise ProblemError(409, "conflict", f"the tenant is {tenant.status}, not active")
    return tenant


async def start_migration(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_permission(claims, STORAGE_MIGRATE)
    body = await read_json(request, StorageMigrationIn)
    tenant_id = _subject(claims, body)
    tenant = await _live_tenant(request, tenant_id)
    source = body.source.value if body.source else tenant.storage_provider
    targets = [body.target.value, *(kind.value for kind in body.fallback_targets)]
    if source in targets:
        raise ProblemError(
            422, "validation", f"the files are already in {source}: pick another target"
        )
    configured = {kind.value for kind in request.app[SETTINGS].storage_kinds}
    missing = sorted({source, *targets} - configured)
    if missing:
        raise ProblemError(
            422,
            "provider-not-configured",
            f"not configured in this deployment: {', '.join(missing)}",
        )
    migration_id = str(uuid.uuid4())
    return await start_operation(
        request,
        workflow=FILE_MIGRATION_WORKFLOW,
        arg=FileMigrationRequest(
            tenant_id=str(tenant_id),
            target=body.target.value,
            fallback_targets=[kind.value for kind in body.fallback_targets],
            source=source,
            prefix=body.prefix,
            batch_size=body.batch_size,
            parallelism=body.parallelism,
            delete_source=body.delete_source,
            target_attempts=body.target_attempts,
            migration_id=migration_id,
            requested_by=claims.user_id if _is_uuid(claims.user_id) else None,
        ),
        workflow_id=migration_workflow_id(str(tenant_id)),
        domain=FILES_TASK_QUEUE,
        subject_tenant_id=str(tenant_id),
        conflict_detail="a migration of this tenant's files is already running",
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def migration_json(row: StorageMigration) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "tenant_id": str(row.tenant_id),
        "source": row.source,
        "targets": row.targets,
        "target_used": row.target_used,
        "prefix": row.prefix,
        "delete_source": row.delete_source,
        "status": row.status,
        "result": row.result,
        "failure": row.failure,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def _tenant_query(request: web.Request, claims: Claims) -> uuid.UUID:
    raw = request.query.get("tenant_id")
    if raw is None:
        return uuid.UUID(claims.tenant_id)
    return tenant_in_reach(claims, raw)


async def list_migrations(request: web.Request) -> web.Response:
    claims = claims_of(request)
    tenant_id = _tenant_query(request, claims)
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        rows = (
            await session.scalars(
                select(StorageMigration)
                .where(StorageMigration.tenant_id == tenant_id)
                .order_by(StorageMigration.created_at.desc(), StorageMigration.id)
                .limit(MAX_LIST)
            )
        ).all()
    return web.json_response({"items": [migration_json(row) for row in rows]})


async def list_providers(request: web.Request) -> web.Response:
    claims = claims_of(request)
    tenant_id = _tenant_query(request, claims)
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        current = await session.scalar(
            select(Tenant.storage_provider).where(Tenant.id == tenant_id)
        )
    settings = request.app[SETTINGS]
    return web.json_response(
        {
            "configured": [kind.value for kind in settings.storage_kinds],
            "default": settings.storage_provider.value,
            "tenant": current,
        }
    )


_START = workflow_post(
    "Move the tenant's files, or a folder of them, to another storage provider "
    "(file_migration_workflow); tenant admins, or platform admins for any tenant",
    "startStorageMigration",
    "StorageMigrationIn",
    400,
    401,
    403,
    404,
    409,
    413,
    415,
    422,
)
_MIGRATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "tenant_id", "source", "targets", "status", "created_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "tenant_id": {"type": "string", "format": "uuid"},
        "source": {"type": "string"},
        "targets": {"type": "array", "items": {"type": "string"}},
        "target_used": {"type": ["string", "null"]},
        "prefix": {"type": ["string", "null"]},
        "delete_source": {"type": "boolean"},
        "status": {"type": "string"},
        "result": {"type": ["object", "null"]},
        "failure": {"type": ["object", "string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_TENANT_QUERY = {
    "name": "tenant_id",
    "in": "query",
    "required": False,
    "description": "Platform admins: another tenant",
    "schema": {"type": "string", "format": "uuid"},
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/storage/migrations": {
        "post": _START,
        "get": {
            "summary": "The tenant's storage migrations, newest first, with their outcome",
            "operationId": "listStorageMigrations",
            "parameters": [_TENANT_QUERY],
            "responses": {
                "200": json_response(
                    "Migrations",
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {"items": {"type": "array", "items": _MIGRATION_SCHEMA}},
                    },
                ),
                **errors(401, 404),
            },
        },
    },
    "/v1/storage/providers": {
        "get": {
            "summary": "The storage providers this deployment has, and the tenant's current one",
            "operationId": "listStorageProviders",
            "parameters": [_TENANT_QUERY],
            "responses": {
                "200": json_response(
                    "Providers",
                    {
                        "type": "object",
                        "required": ["configured", "default", "tenant"],
                        "properties": {
                            "configured": {"type": "array", "items": {"type": "string"}},
                            "default": {"type": "string"},
                            "tenant": {"type": ["string", "null"]},
                        },
                    },
                ),
                **errors(401, 404),
            },
        }
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (StorageMigrationIn,)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/storage/migrations", start_migration)
    app.router.add_get("/v1/storage/migrations", list_migrations)
    app.router.add_get("/v1/storage/providers", list_providers)
