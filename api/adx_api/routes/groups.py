"""Groups of a tenant's users, so that a file can be shared with a team at once.

- ``POST /v1/groups`` ``{name}``: tenant admins; 201 with the group.
- ``GET /v1/groups``: every member of the tenant (to pick whom to share with).
- ``PUT`` / ``DELETE /v1/groups/{id}/members/{user_id}``: tenant admins; 204. Only a member
  of the tenant can join one of its groups.

Everything runs in the caller's tenant under RLS: another tenant's group or user is a 404,
like a missing one.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adx_api.keys import SESSIONS, claims_of, context_of
from adx_api.openapi_parts import errors, json_body, json_response
from adx_api.problems import ProblemError
from adx_api.routes.common import parse_uuid, read_json, require_permission
from adx_core.contracts.permissions import GROUPS_MANAGE
from adx_core.db.engine import tenant_session
from adx_core.db.models import AuditEntry, Group, GroupMember, Membership

MAX_GROUPS_LISTED = 1000

# Printable text without control characters; trimmed.
GroupName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: GroupName


def _audit(
    request: web.Request, tenant_id: uuid.UUID, action: str, details: dict[str, Any]
) -> AuditEntry:
    return AuditEntry(
        tenant_id=tenant_id,
        actor_id=claims_of(request).user_id,
        action=action,
        subject=str(details["group_id"]),
        correlation_id=context_of(request).correlation_id,
        details=details,
    )


async def create_group(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_permission(claims, GROUPS_MANAGE)
    body = await read_json(request, GroupIn)
    tenant_id = uuid.UUID(claims.tenant_id)
    group_id = uuid.uuid4()
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        inserted = await session.execute(
            insert(Group)
            .values(id=group_id, tenant_id=tenant_id, name=body.name)
            .on_conflict_do_nothing(constraint="uq_groups_tenant_name")
        )
        if not inserted.rowcount:  # type: ignore[attr-defined]
            raise ProblemError(409, "conflict", "the tenant has a group of this name")
        session.add(_audit(request, tenant_id, "group.created", {"group_id": str(group_id)}))
        group = await session.get(Group, group_id)
        assert group is not None  # inserted in this transaction
        answer = _group_json(group, [])
    return web.json_response(answer, status=201, headers={"Location": f"/v1/groups/{group_id}"})


def _group_json(group: Group, members: list[uuid.UUID]) -> dict[str, Any]:
    return {
        "id": str(group.id),
        "name": group.name,
        "members": sorted(str(member) for member in members),
        "created_at": group.created_at.isoformat(),
    }


async def list_groups(request: web.Request) -> web.Response:
    claims = claims_of(request)
    async with tenant_session(request.app[SESSIONS], claims.tenant_id) as session:
        groups = (
            await session.scalars(
                select(Group).order_by(Group.name, Group.id).limit(MAX_GROUPS_LISTED)
            )
        ).all()
        rows = await session.execute(
            select(GroupMember.group_id, GroupMember.user_id).where(
                GroupMember.group_id.in_([group.id for group in groups])
            )
        )
        members: dict[uuid.UUID, list[uuid.UUID]] = {}
        for group_id, user_id in rows:
            members.setdefault(group_id, []).append(user_id)
    body = {"groups": [_group_json(group, members.get(group.id, [])) for group in groups]}
    return web.json_response(body)


async def _group_and_member(
    session: AsyncSession, tenant_id: uuid.UUID, request: web.Request
) -> tuple[uuid.UUID, uuid.UUID]:
    group_id = parse_uuid(request.match_info["id"], "group")
    user_id = parse_uuid(request.match_info["user_id"], "user")
    if await session.get(Group, group_id) is None:
        raise ProblemError(404, "not-found", "no such group")
    if await session.get(Membership, (tenant_id, user_id)) is None:
        raise ProblemError(404, "not-found", "no such user")
    return group_id, user_id


async def add_member(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_permission(claims, GROUPS_MANAGE)
    tenant_id = uuid.UUID(claims.tenant_id)
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        group_id, user_id = await _group_and_member(session, tenant_id, request)
        added = await session.execute(
            insert(GroupMember)
            .values(group_id=group_id, user_id=user_id, tenant_id=tenant_id)
            .on_conflict_do_nothing()
        )
        if added.rowcount:  # type: ignore[attr-defined]
            details = {"group_id": str(group_id), "user_id": str(user_id)}
            session.add(_audit(request, tenant_id, "group.member_added", details))
    return web.Response(status=204)


async def remove_member(request: web.Request) -> web.Response:
    """Takes effect at once: a grant to the group no longer reaches the user."""
    claims = claims_of(request)
    require_permission(claims, GROUPS_MANAGE)
    tenant_id = uuid.UUID(claims.tenant_id)
    async with tenant_session(request.app[SESSIONS], tenant_id) as session:
        group_id = parse_uuid(request.match_info["id"], "group")
        user_id = parse_uuid(request.match_info["user_id"], "user")
        if await session.get(Group, group_id) is None:
            raise ProblemError(404, "not-found", "no such group")
        removed = await session.execute(
            delete(GroupMember).where(
                GroupMember.group_id == group_id, GroupMember.user_id == user_id
            )
        )
        if removed.rowcount:  # type: ignore[attr-defined]
            details = {"group_id": str(group_id), "user_id": str(user_id)}
            session.add(_audit(request, tenant_id, "group.member_removed", details))
    return web.Response(status=204)


_GROUP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "members", "created_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "members": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_MEMBER_PARAMS: list[dict[str, Any]] = [
    {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    for name in ("id", "user_id")
]

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/groups": {
        "post": {
            "summary": "Create a group in the caller's tenant; tenant admins",
            "operationId": "createGroup",
            "requestBody": json_body("GroupIn"),
            "responses": {
                "201": {
                    **json_response("The group", _GROUP_SCHEMA),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                **errors(400, 401, 403, 409, 413, 415, 422),
            },
        },
        "get": {
            "summary": "The caller's tenant's groups and their members",
            "operationId": "listGroups",
            "responses": {
                "200": json_response(
                    "The groups",
                    {
                        "type": "object",
                        "required": ["groups"],
                        "properties": {"groups": {"type": "array", "items": _GROUP_SCHEMA}},
                    },
                ),
                **errors(401),
            },
        },
    },
    "/v1/groups/{id}/members/{user_id}": {
        "put": {
            "summary": "Add a member of the tenant to a group; tenant admins",
            "operationId": "addGroupMember",
            "parameters": _MEMBER_PARAMS,
            "responses": {"204": {"description": "A member"}, **errors(401, 403, 404)},
        },
        "delete": {
            "summary": "Remove a user from a group, at once; tenant admins",
            "operationId": "removeGroupMember",
            "parameters": _MEMBER_PARAMS,
            "responses": {"204": {"description": "Not a member"}, **errors(401, 403, 404)},
        },
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (GroupIn,)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/groups", create_group)
    app.router.add_get("/v1/groups", list_groups)
    app.router.add_put("/v1/groups/{id}/members/{user_id}", add_member)
    app.router.add_delete("/v1/groups/{id}/members/{user_id}", remove_member)
