"""The groups endpoints: tenant admins make groups of the tenant's members; everything is
scoped to the caller's tenant."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.sharing.conftest import Api, Scene


async def test_tenant_admins_make_groups_of_members(api: Api, scene: Scene) -> None:
    admin = scene.headers("ada")
    created = await api.post("/v1/groups", json={"name": "  Finance  "}, headers=admin)
    assert created.status == 201
    group = await created.json()
    assert group["name"] == "Finance"
    assert group["members"] == []
    assert created.headers["Location"] == f"/v1/groups/{group['id']}"

    duplicate = await api.post("/v1/groups", json={"name": "Finance"}, headers=admin)
    assert duplicate.status == 409
    # Another tenant may use the same name.
    elsewhere = await api.post(
        "/v1/groups", json={"name": "Finance"}, headers=scene.world.headers("eve", scene.globex)
    )
    assert elsewhere.status == 403  # Eve is a member, not an admin
    await scene.world.execute(
        "UPDATE memberships SET role = 'tenant-admin' WHERE user_id = :u", u=scene.user("eve")
    )
    eve_admin = {
        "Authorization": "Bearer "
        + scene.world.token(scene.user("eve"), scene.globex, "tenant-admin")
    }
    assert (await api.post("/v1/groups", json={"name": "Finance"}, headers=eve_admin)).status == 201

    member = f"/v1/groups/{group['id']}/members/{scene.user('bob')}"
    assert (await api.put(member, headers=admin)).status == 204
    assert (await api.put(member, headers=admin)).status == 204  # idempotent
    listed = await (await api.get("/v1/groups", headers=scene.headers("bob"))).json()
    names = {g["name"]: g for g in listed["groups"]}
    assert set(names) == {"Finance", "team"}
    assert names["Finance"]["members"] == [str(scene.user("bob"))]
    assert sorted(names["team"]["members"]) == sorted(
        [str(scene.user("carol")), str(scene.user("dave"))]
    )

    assert (await api.delete(member, headers=admin)).status == 204
    assert (await api.delete(member, headers=admin)).status == 204
    audit = await scene.world.rows("SELECT action FROM audit_log ORDER BY id")
    assert [a.action for a in audit] == [
        "group.created",
        "group.created",
        "group.member_added",
        "group.member_removed",
    ]


async def test_groups_stay_in_their_tenant(api: Api, scene: Scene) -> None:
    admin = scene.headers("ada")
    # Eve is not a member of Acme; Globex's group is not Acme's.
    not_member = await api.put(
        f"/v1/groups/{scene.team}/members/{scene.user('eve')}", headers=admin
    )
    assert not_member.status == 404
    foreign = await api.put(
        f"/v1/groups/{scene.other_group}/members/{scene.user('bob')}", headers=admin
    )
    assert foreign.status == 404
    removed = await api.delete(
        f"/v1/groups/{scene.other_group}/members/{scene.user('eve')}", headers=admin
    )
    assert removed.status == 404
    listed = await (await api.get("/v1/groups", headers=scene.headers("eve"))).json()
    assert [g["name"] for g in listed["groups"]] == ["globex-team"]
    assert await scene.world.scalar("SELECT count(*) FROM group_members") == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "a\nb"},
        {"name": 1},
        {"name": "ok", "extra": True},
    ],
)
async def test_bad_group_bodies_are_422(api: Api, scene: Scene, body: object) -> None:
    response = await api.post("/v1/groups", json=body, headers=scene.headers("ada"))
    assert response.status == 422


async def test_only_admins_change_groups(api: Api, scene: Scene) -> None:
    bob = scene.headers("bob")
    assert (await api.post("/v1/groups", json={"name": "mine"}, headers=bob)).status == 403
    member = f"/v1/groups/{scene.team}/members/{scene.user('bob')}"
    assert (await api.put(member, headers=bob)).status == 403
    assert (await api.delete(member, headers=bob)).status == 403
    assert (await api.put(member)).status == 401
    unknown = f"/v1/groups/{uuid.uuid4()}/members/{scene.user('bob')}"
    assert (await api.put(unknown, headers=scene.headers("ada"))).status == 404
