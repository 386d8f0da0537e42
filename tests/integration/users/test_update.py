"""user_update_workflow through PATCH and DELETE /v1/users/{id}: changes land in the
identity, the membership and the sessions, or nowhere; the last admin stays."""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import adx_api.middleware
from adx_core.auth import Role
from adx_core.db.engine import Sessions
from adx_core.sessions import issue_session_token, session_is_active
from adx_core.settings import Settings
from adx_workers.resources import WorkerResources
from adx_workers.users.activities import UserActivities
from tests.integration.users.conftest import (
    INJECTED,
    NoCache,
    UsersWorkerFactory,
    World,
    bearer,
    failing,
)

Api = TestClient[web.Request, web.Application]
WAIT = {"Prefer": "wait=20"}

MIDDLEWARE_CHECKS_SESSIONS = "session_is_active" in inspect.getsource(adx_api.middleware)


class Acme:
    def __init__(self, tenant: uuid.UUID, ada: uuid.UUID, bob: uuid.UUID, token: str) -> None:
        self.tenant, self.ada, self.bob, self.admin_token = tenant, ada, bob, token


async def acme(world: World) -> Acme:
    """acme with ada (its only tenant-admin) and bob (a member, active in acme)."""
    tenant = await world.tenant("acme")
    ada = await world.user("ada@example.test", [(tenant, "tenant-admin")], active=tenant)
    bob = await world.user("bob@example.test", [(tenant, "member")], active=tenant)
    return Acme(tenant, ada, bob, world.token(ada, tenant, "tenant-admin"))


async def session_for(
    sessions: Sessions, settings: Settings, user: uuid.UUID, tenant: uuid.UUID, role: str
) -> tuple[uuid.UUID, str]:
    issued = await issue_session_token(
        sessions,
        settings,
        session_id=uuid.uuid4(),
        user_id=user,
        tenant_id=tenant,
        role=Role(role),
    )
    return issued.session_id, issued.token


async def patch(api: Api, token: str, user: uuid.UUID, body: Any) -> tuple[int, Any]:
    response = await api.patch(f"/v1/users/{user}", json=body, headers={**bearer(token), **WAIT})
    return response.status, await response.json(content_type=None)


async def delete(api: Api, token: str, user: uuid.UUID) -> tuple[int, Any]:
    response = await api.delete(f"/v1/users/{user}", headers={**bearer(token), **WAIT})
    return response.status, await response.json(content_type=None)


async def test_a_change_lands_in_identity_and_membership_and_ends_old_sessions(
    api: Api, world: World, users_worker: Any, sessions: Sessions, settings: Settings
) -> None:
    a = await acme(world)
    session_id, _ = await session_for(sessions, settings, a.bob, a.tenant, "member")
    status, operation = await patch(api, a.admin_token, a.bob, {"name": "Robert", "role": "viewer"})
    assert status == 200, operation
    assert operation["status"] == "succeeded", operation
    result = operation["result"]
    assert (result["name"], result["role"], result["sessions_revoked"]) == ("Robert", "viewer", 1)
    assert "files.write" not in result["permissions"]
    assert await world.scalar("SELECT name FROM users WHERE id = :u", u=a.bob) == "Robert"
    assert await world.scalar("SELECT role FROM memberships WHERE user_id = :u", u=a.bob) == (
        "viewer"
    )
    # The old token carries the old role: its session is over.
    assert not await session_is_active(sessions, a.tenant, session_id)


async def test_a_name_change_keeps_sessions(
    api: Api, world: World, users_worker: Any, sessions: Sessions, settings: Settings
) -> None:
    a = await acme(world)
    session_id, _ = await session_for(sessions, settings, a.bob, a.tenant, "member")
    _status, operation = await patch(api, a.admin_token, a.bob, {"name": "Bobby"})
    assert operation["status"] == "succeeded", operation
    assert operation["result"]["sessions_revoked"] == 0
    assert await session_is_active(sessions, a.tenant, session_id)


async def test_removal_revokes_membership_sessions_and_active_tenant(
    api: Api, world: World, users_worker: Any, sessions: Sessions, settings: Settings
) -> None:
    a = await acme(world)
    globex = await world.tenant("globex")
    await world.execute(
        "INSERT INTO memberships (tenant_id, user_id, role) VALUES (:t, :u, 'member')",
        t=globex,
        u=a.bob,
    )
    session_id, bob_token = await session_for(sessions, settings, a.bob, a.tenant, "member")
    elsewhere, _ = await session_for(sessions, settings, a.bob, globex, "member")
    me = await api.get("/v1/me", headers=bearer(bob_token))
    assert me.status == 200

    status, operation = await delete(api, a.admin_token, a.bob)
    assert status == 200, operation
    assert operation["status"] == "succeeded", operation
    assert operation["result"]["removed"] is True
    assert operation["result"]["sessions_revoked"] == 1
    assert (
        await world.scalar(
            "SELECT count(*) FROM memberships WHERE tenant_id = :t AND user_id = :u",
            t=a.tenant,
            u=a.bob,
        )
        == 0
    )
    assert await world.scalar("SELECT active_tenant_id FROM users WHERE id = :u", u=a.bob) is None
    revoked = await world.scalar("SELECT revoked_at FROM auth_sessions WHERE id = :s", s=session_id)
    assert revoked is not None
    assert not await session_is_active(sessions, a.tenant, session_id)
    # Only this tenant: the identity and the other tenant's membership and session stay.
    assert await session_is_active(sessions, globex, elsewhere)
    assert await world.scalar("SELECT count(*) FROM users WHERE id = :u", u=a.bob) == 1

    response = await api.get(f"/v1/users/{a.bob}", headers=bearer(a.admin_token))
    assert response.status == 404
    if MIDDLEWARE_CHECKS_SESSIONS:
        refused = await api.get("/v1/me", headers=bearer(bob_token))
        assert refused.status == 401


@pytest.mark.skipif(
    not MIDDLEWARE_CHECKS_SESSIONS, reason="the API middleware does not check sessions yet"
)
async def test_a_revoked_token_is_refused_over_http(
    api: Api, world: World, users_worker: Any, sessions: Sessions, settings: Settings
) -> None:
    a = await acme(world)
    _, bob_token = await session_for(sessions, settings, a.bob, a.tenant, "member")
    assert (await api.get("/v1/me", headers=bearer(bob_token))).status == 200
    await delete(api, a.admin_token, a.bob)
    response = await api.get("/v1/me", headers=bearer(bob_token))
    assert response.status == 401
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("change", "body"),
    [("demote", {"role": "member"}), ("remove", None)],
)
async def test_the_last_tenant_admin_stays(
    change: str, body: Any, api: Api, world: World, users_worker: Any
) -> None:
    a = await acme(world)
    before = await world.state()
    if body is None:
        status, problem = await delete(api, a.admin_token, a.ada)
    else:
        status, problem = await patch(api, a.admin_token, a.ada, body)
    assert status == 409, problem
    assert problem["code"] == "LastTenantAdmin"
    assert await world.state() == before


async def test_the_workflow_itself_refuses_to_demote_the_last_admin(
    world: World, users_worker: Any, temporal_client: Any, settings: Settings
) -> None:
    """The route's early check can be raced; the workflow's check under row locks cannot."""
    from temporalio.client import WorkflowFailureError

    from adx_core.contracts.users import USER_UPDATE_WORKFLOW, UserUpdateRequest

    a = await acme(world)
    before = await world.state()
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            USER_UPDATE_WORKFLOW,
            UserUpdateRequest(str(a.tenant), str(a.ada), str(a.ada), role="viewer"),
            id=f"user-update-{uuid.uuid4().hex}",
            task_queue=settings.task_queue("users"),
        )
    assert "last tenant-admin" in str(failure.value.cause.cause)
    assert await world.state() == before


async def test_a_second_admin_can_be_demoted(api: Api, world: World, users_worker: Any) -> None:
    a = await acme(world)
    await world.execute("UPDATE memberships SET role = 'tenant-admin' WHERE user_id = :u", u=a.bob)
    _status, operation = await patch(api, a.admin_token, a.ada, {"role": "member"})
    assert operation["status"] == "succeeded", operation


# (request, failing step, real activity, does the fake do the work first)
UPDATE_FAILURES = [
    ("patch", "load_user", "load_user_for_update", False),
    ("patch", "update_identity", "update_identity", True),
    ("patch", "change_role", "change_role", True),
    ("patch", "revoke_sessions", "revoke_user_sessions", False),
    ("delete", "load_user", "load_user_for_update", False),
    ("delete", "remove_membership", "remove_membership", True),
    ("delete", "revoke_sessions", "revoke_user_sessions", False),
]


@pytest.mark.parametrize(
    ("kind", "step", "method", "after_work"),
    UPDATE_FAILURES,
    ids=[f"{kind}-{step}" for kind, step, _, _ in UPDATE_FAILURES],
)
async def test_a_failed_step_restores_the_user(
    kind: str,
    step: str,
    method: str,
    after_work: bool,
    api: Api,
    world: World,
    users_worker_with: UsersWorkerFactory,
    resources: WorkerResources,
    settings: Settings,
) -> None:
    a = await acme(world)
    await session_for(resources.sessions, settings, a.bob, a.tenant, "member")
    before = await world.state()
    real = UserActivities(resources.sessions, settings, NoCache())
    async with users_worker_with(failing(getattr(real, method), after_work=after_work)):
        if kind == "patch":
            status, operation = await patch(
                api,
                a.admin_token,
                a.bob,
                {"name": "Robert", "status": "disabled", "role": "viewer"},
            )
        else:
            status, operation = await delete(api, a.admin_token, a.bob)
    assert status == 200, operation
    assert operation["status"] == "failed"
    assert operation["error"] == {**operation["error"], "code": INJECTED, "step": step}
    assert await world.state() == before


async def test_another_tenants_users_are_out_of_reach(
    api: Api, world: World, users_worker: Any
) -> None:
    a = await acme(world)
    globex = await world.tenant("globex")
    gus = await world.user("gus@example.test", [(globex, "member")], active=globex)
    before = await world.state()
    assert (await api.get(f"/v1/users/{gus}", headers=bearer(a.admin_token))).status == 404
    assert (await patch(api, a.admin_token, gus, {"name": "Mallory"}))[0] == 404
    assert (await delete(api, a.admin_token, gus))[0] == 404
    assert await world.state() == before


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_only_admins_change_users(
    role: str, api: Api, world: World, users_worker: Any
) -> None:
    a = await acme(world)
    carl = await world.user("carl@example.test", [(a.tenant, role)])
    token = world.token(carl, a.tenant, role)
    before = await world.state()
    assert (await patch(api, token, a.bob, {"name": "X"}))[0] == 403
    assert (await delete(api, token, a.bob))[0] == 403
    # Reading is allowed to every member.
    assert (await api.get(f"/v1/users/{a.bob}", headers=bearer(token))).status == 200
    assert await world.state() == before
