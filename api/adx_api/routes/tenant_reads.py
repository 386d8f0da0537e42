"""Direct reads of tenants: answered from the database under RLS, no workflow involved.

``GET /v1/tenants`` lists every tenant for a platform admin (the platform scope may read
all tenant rows) and, for anyone else, the tenants they belong to. ``GET /v1/tenants/{id}``
and ``/usage`` answer for the caller's own tenant, or any tenant for a platform admin;
another tenant's id is a 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import select

from adx_api.keys import SESSIONS, claims_of
from adx_api.openapi_parts import UUID_ID_PARAM, errors, json_response
from adx_api.problems import ProblemError
from adx_api.routes.common import is_platform_admin, tenant_in_reach
from adx_core.contracts.plans import QUOTA_NAMES
from adx_core.contracts.tenants import PLATFORM_TENANT_ID, TenantStatus
from adx_core.db.engine import tenant_session
from adx_core.db.models import Tenant, TenantQuota, TenantUsage
from adx_core.db.repositories import memberships_of_user

MAX_PAGE = 200
DEFAULT_PAGE = 50
_STATUSES = frozenset(status.value for status in TenantStatus)


def tenant_json(tenant: Tenant, quota: TenantQuota | None) -> dict[str, Any]:
    return {
        "id": str(tenant.id),
        "slug": tenant.slug,
        "display_name": tenant.display_name,
        "plan": tenant.plan,
        "status": tenant.status,
        "failure": tenant.failure,
        "settings": tenant.settings,
        "quotas": {name: getattr(quota, name) for name in QUOTA_NAMES} if quota else None,
        "features": quota.features if quota else [],
        "created_at": tenant.created_at.isoformat(),
        "updated_at": tenant.updated_at.isoformat(),
    }


def _page_params(request: web.Request) -> tuple[int, str | None, str | None]:
    raw_limit = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise ProblemError(400, "bad-query", f"limit must be a whole number from 1 to {MAX_PAGE}")
    status = request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise ProblemError(
            400, "bad-query", f"status must be one of: {', '.join(sorted(_STATUSES))}"
        )
    after = request.query.get("after")
    if after is not None and (len(after) > 40 or not after.replace("-", "").isalnum()):
        raise ProblemError(400, "bad-query", "after must be a tenant slug from a previous page")
    return int(raw_limit), status, after


async def list_tenants(request: web.Request) -> web.Response:
    claims = claims_of(request)
    limit, status, after = _page_params(request)
    sessions = request.app[SESSIONS]
    if is_platform_admin(claims):
        async with tenant_session(sessions, PLATFORM_TENANT_ID) as session:
            query = select(Tenant).order_by(Tenant.slug, Tenant.id).limit(limit + 1)
            if status is not None:
                query = query.where(Tenant.status == status)
            if after is not None:
                query = query.where(Tenant.slug > after)
            rows = list((await session.scalars(query)).all())
        items = [tenant_json(t, None) for t in rows[:limit]]
        has_more = len(rows) > limit
    else:
        # A person's tenants cross tenant scopes; the lookup function returns just these.
        async with sessions() as session:
            mine = await memberships_of_user(session, _user_uuid(claims.user_id))
        rows_m = [
            m
            for m in mine
            if (status is None or m["status"] == status) and (after is None or m["slug"] > after)
        ][: limit + 1]
        items = [
            {
                "id": str(m["tenant_id"]),
                "slug": m["slug"],
                "display_name": m["display_name"],
                "status": m["status"],
                "role": m["role"],
            }
            for m in rows_m[:limit]
        ]
        has_more = len(rows_m) > limit
    body: dict[str, Any] = {"items": items}
    if has_more:
        body["next"] = f"/v1/tenants?limit={limit}&after={items[-1]['slug']}" + (
            f"&status={status}" if status else ""
        )
    return web.json_response(body)


def _user_uuid(user_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(user_id)
    except ValueError:
        # A service token's subject need not be a user id; such a caller belongs nowhere.
        return uuid.UUID(int=0)


async def get_tenant(request: web.Request) -> web.Response:
    tenant_id = tenant_in_reach(claims_of(request), request.match_info["id"])
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        tenant = await session.get(Tenant, tenant_id)
        quota = await session.get(TenantQuota, tenant_id)
    if tenant is None:
        raise ProblemError(404, "not-found", "no such tenant")
    return web.json_response(tenant_json(tenant, quota))


async def get_usage(request: web.Request) -> web.Response:
    """The latest sample of tenant_monitoring_workflow, against the tenant's quotas."""
    tenant_id = tenant_in_reach(claims_of(request), request.match_info["id"])
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        tenant = await session.get(Tenant, tenant_id)
        quota = await session.get(TenantQuota, tenant_id)
        usage = await session.get(TenantUsage, tenant_id)
    if tenant is None:
        raise ProblemError(404, "not-found", "no such tenant")
    resources: dict[str, Any] = {}
    for name in ("storage_bytes", "files", "users", "db_rows"):
        used = getattr(usage, name) if usage else None
        limit = getattr(quota, name) if quota else None
        percent = round(100 * used / limit, 1) if used is not None and limit else None
        resources[name] = {"used": used, "quota": limit, "percent": percent}
    return web.json_response(
        {
            "tenant_id": str(tenant_id),
            "plan": tenant.plan,
            "sampled_at": usage.sampled_at.isoformat() if usage else None,
            "resources": resources,
        }
    )


_TIME = {"type": "string", "format": "date-time"}
_TENANT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "slug", "display_name", "plan", "status", "quotas", "features"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "slug": {"type": "string"},
        "display_name": {"type": "string"},
        "plan": {"type": "string"},
        "status": {"type": "string"},
        "failure": {"type": ["object", "string", "null"]},
        "settings": {"type": ["object", "null"]},
        "quotas": {
            "type": ["object", "null"],
            "additionalProperties": {"type": ["integer", "null"]},
        },
        "features": {"type": "array", "items": {"type": "string"}},
        "created_at": _TIME,
        "updated_at": _TIME,
    },
}
# A platform admin's page holds tenants; anyone else's, their memberships.
_TENANT_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "slug", "display_name", "status"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "slug": {"type": "string"},
        "display_name": {"type": "string"},
        "status": {"type": "string"},
        "role": {"type": "string"},
    },
}
_USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tenant_id", "plan", "sampled_at", "resources"],
    "properties": {
        "tenant_id": {"type": "string", "format": "uuid"},
        "plan": {"type": "string"},
        "sampled_at": {"type": ["string", "null"], "format": "date-time"},
        "resources": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["used", "quota", "percent"],
                "properties": {
                    "used": {"type": ["integer", "null"]},
                    "quota": {"type": ["integer", "null"]},
                    "percent": {"type": ["number", "null"]},
                },
            },
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/tenants": {
        "get": {
            "summary": "Tenants: all of them for platform admins, else the caller's own",
            "operationId": "listTenants",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                },
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {"name": "status", "in": "query", "schema": {"enum": sorted(_STATUSES)}},
            ],
            "responses": {
                "200": json_response(
                    "A page of tenants; `next` links the following page",
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {"type": "array", "items": _TENANT_ITEM_SCHEMA},
                            "next": {"type": "string"},
                        },
                    },
                ),
                **errors(400, 401),
            },
        }
    },
    "/v1/tenants/{id}": {
        "get": {
            "summary": "One tenant, with its quotas and features",
            "operationId": "getTenant",
            "parameters": [UUID_ID_PARAM],
            "responses": {"200": json_response("The tenant", _TENANT_SCHEMA), **errors(401, 404)},
        }
    },
    "/v1/tenants/{id}/usage": {
        "get": {
            "summary": "The tenant's latest usage sample against its quotas",
            "operationId": "getTenantUsage",
            "parameters": [UUID_ID_PARAM],
            "responses": {
                "200": json_response("Usage per resource", _USAGE_SCHEMA),
                **errors(401, 404),
            },
        }
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = ()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/tenants", list_tenants)
    app.router.add_get("/v1/tenants/{id}", get_tenant)
    app.router.add_get("/v1/tenants/{id}/usage", get_usage)
