"""user_onboarding_workflow through POST /v1/users: identity, membership, invitation and
the invitation e-mail, all or nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adx_core.settings import Settings
from adx_workers.common.notify import NotificationActivities
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
from tests.support.mail import Mailbox

Api = TestClient[web.Request, web.Application]

WAIT = {"Prefer": "wait=20"}
CAROL = {"email": "Carol@Example.test", "name": "Carol", "role": "member"}


async def acme_with_admin(world: World) -> tuple[uuid.UUID, uuid.UUID]:
    acme = await world.tenant("acme")
    ada = await world.user("ada@example.test", [(acme, "tenant-admin")], active=acme)
    return acme, ada


async def onboard(
    api: Api, token: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await api.post(
        "/v1/users", json=body, headers={**bearer(token), **WAIT, **(headers or {})}
    )
    return response.status, await response.json(content_type=None)


async def test_onboarding_creates_identity_membership_and_invitation(
    api: Api, world: World, users_worker: Any, mailbox: Mailbox
) -> None:
    acme, ada = await acme_with_admin(world)
    status, operation = await onboard(api, world.token(ada, acme, "tenant-admin"), CAROL)
    assert status == 200, operation
    assert operation["status"] == "succeeded", operation
    result = operation["result"]
    assert result["created_identity"] is True
    assert result["email"] == "carol@example.test"
    assert "files.write" in result["permissions"]
    carol = uuid.UUID(result["user_id"])

    assert await world.rows("SELECT email, name FROM users WHERE id = :u", u=carol) == [
        ("carol@example.test", "Carol")
    ]
    assert (
        await world.scalar(
            "SELECT role FROM memberships WHERE tenant_id = :t AND user_id = :u", t=acme, u=carol
        )
        == "member"
    )
    (invitation,) = await world.rows(
        "SELECT id, role, expires_at FROM invitations WHERE user_id = :u", u=carol
    )
    assert str(invitation.id) == result["invitation_id"]
    assert invitation.role == "member"
    remaining = invitation.expires_at - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < remaining <= timedelta(days=7)
    (mail,) = await asyncio.to_thread(mailbox.wait_for, "carol@example.test")
    assert mail["Subject"] == "You are invited to Acme"
    assert result["invitation_id"] in mail.get_content()

    # The new user is readable in the tenant, with the role's permissions.
    response = await api.get(f"/v1/users/{carol}", headers=bearer(world.token(ada, acme)))
    assert response.status == 200
    user = await response.json()
    assert (user["email"], user["role"], user["status"]) == (
        "carol@example.test",
        "member",
        "active",
    )
    assert "users.manage" not in user["permissions"]


async def test_an_identity_from_another_tenant_is_reused_not_duplicated(
    api: Api, world: World, users_worker: Any, mailbox: Mailbox
) -> None:
    acme, ada = await acme_with_admin(world)
    globex = await world.tenant("globex")
    dave = await world.user("dave@example.test", [(globex, "member")], active=globex)
    body = {"email": "dave@example.test", "name": "Dave Again", "role": "viewer"}
    status, operation = await onboard(api, world.token(ada, acme, "tenant-admin"), body)
    assert status == 200, operation
    assert operation["status"] == "succeeded", operation
    assert operation["result"]["user_id"] == str(dave)
    assert operation["result"]["created_identity"] is False
    assert await world.scalar("SELECT count(*) FROM users") == 2
    # The existing identity keeps its name; the membership is new.
    assert await world.scalar("SELECT name FROM users WHERE id = :u", u=dave) == "dave"
    roles = await world.rows(
        "SELECT tenant_id, role FROM memberships WHERE user_id = :u ORDER BY role", u=dave
    )
    assert {(r.tenant_id, r.role) for r in roles} == {(globex, "member"), (acme, "viewer")}


# Each step, its real activity, and whether its fake does the real work before failing.
ONBOARDING_STEPS = {
    "validate": ("validate_onboarding", False),
    "create_identity": ("create_identity", True),
    "create_membership": ("create_membership", True),
    "create_invitation": ("create_invitation", True),
    "send_invitation": ("send_notification", False),
}


@pytest.mark.parametrize("existing_identity", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("step", ONBOARDING_STEPS)
async def test_a_failed_step_leaves_nothing_behind(
    step: str,
    existing_identity: bool,
    api: Api,
    world: World,
    users_worker_with: UsersWorkerFactory,
    resources: WorkerResources,
    settings: Settings,
    mailbox: Mailbox,
) -> None:
    acme, ada = await acme_with_admin(world)
    if existing_identity:
        globex = await world.tenant("globex")
        await world.user("carol@example.test", [(globex, "member")], active=globex)
    before = await world.state()
    method, after_work = ONBOARDING_STEPS[step]
    real: Any = (
        NotificationActivities(resources.sessions, resources.notifier)
        if step == "send_invitation"
        else UserActivities(resources.sessions, settings, NoCache())
    )
    async with users_worker_with(failing(getattr(real, method), after_work=after_work)):
        status, operation = await onboard(api, world.token(ada, acme, "tenant-admin"), CAROL)
    assert status == 200, operation
    assert operation["status"] == "failed"
    assert operation["error"]["code"] == INJECTED
    assert operation["error"]["step"] == step
    assert await world.state() == before
    assert mailbox.to("carol@example.test") == []


async def test_a_refused_address_rolls_the_onboarding_back(
    api: Api, world: World, users_worker: Any, mailbox: Mailbox
) -> None:
    acme, ada = await acme_with_admin(world)
    before = await world.state()
    mailbox.refuse.add("carol@example.test")
    _status, operation = await onboard(api, world.token(ada, acme, "tenant-admin"), CAROL)
    assert operation["status"] == "failed", operation
    assert operation["error"]["code"] == "NotificationRejected"
    assert await world.state() == before


async def test_a_retried_post_with_the_same_idempotency_key_onboards_once(
    api: Api, world: World, users_worker: Any, mailbox: Mailbox
) -> None:
    acme, ada = await acme_with_admin(world)
    token = world.token(ada, acme, "tenant-admin")
    key = {"Idempotency-Key": "onboard-carol-1"}
    first, second = await asyncio.gather(
        onboard(api, token, CAROL, key), onboard(api, token, CAROL, key)
    )
    third = await onboard(api, token, CAROL, key)
    assert first[1]["id"] == second[1]["id"] == third[1]["id"]
    assert third[0] == 200, third
    assert third[1]["status"] == "succeeded", third
    assert await world.scalar("SELECT count(*) FROM memberships WHERE tenant_id = :t", t=acme) == 2
    assert await world.scalar("SELECT count(*) FROM invitations") == 1
    await asyncio.sleep(0.3)
    assert len(mailbox.to("carol@example.test")) == 1


async def test_onboarding_an_existing_member_conflicts(
    api: Api, world: World, users_worker: Any
) -> None:
    acme, ada = await acme_with_admin(world)
    body = {"email": "ADA@example.test", "name": "Ada", "role": "viewer"}
    status, problem = await onboard(api, world.token(ada, acme, "tenant-admin"), body)
    assert status == 409, problem


async def test_two_concurrent_onboardings_of_one_person_conflict(
    api: Api, world: World, users_worker_with: UsersWorkerFactory
) -> None:
    acme, ada = await acme_with_admin(world)
    token = world.token(ada, acme, "tenant-admin")
    # No worker yet: the first onboarding stays running while the second one arrives.
    response = await api.post("/v1/users", json=CAROL, headers=bearer(token))
    assert response.status == 202
    second = await api.post("/v1/users", json=CAROL, headers=bearer(token))
    assert second.status == 409
    async with users_worker_with():
        final = await api.get(response.headers["Location"], headers={**bearer(token), **WAIT})
        for _ in range(100):
            body = await final.json()
            if body["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
            final = await api.get(response.headers["Location"], headers=bearer(token))
    assert body["status"] == "succeeded", body


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_only_admins_onboard(role: str, api: Api, world: World, users_worker: Any) -> None:
    acme, _ = await acme_with_admin(world)
    bob = await world.user("bob@example.test", [(acme, role)])
    before = await world.state()
    status, problem = await onboard(api, world.token(bob, acme, role), CAROL)
    assert status == 403, problem
    assert await world.state() == before


async def test_the_user_quota_is_enforced(api: Api, world: World, users_worker: Any) -> None:
    acme, ada = await acme_with_admin(world)
    await world.execute("UPDATE tenant_quotas SET users = 1 WHERE tenant_id = :t", t=acme)
    before = await world.state()
    _status, operation = await onboard(api, world.token(ada, acme, "tenant-admin"), CAROL)
    assert operation["status"] == "failed", operation
    assert operation["error"]["code"] == "UserQuotaExceeded"
    assert await world.state() == before
