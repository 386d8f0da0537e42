"""file_sharing_workflow through the HTTP API, on the real Temporal dev server, PostgreSQL
and SMTP server: grant, notify, read as the grantee, revoke, a group grant, a refused
cross-tenant share, a mail the server refuses, idempotency and a cancel."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.worker import Worker

from adx_api.file_access import Access, access_to, require_file
from adx_api.problems import ProblemError
from adx_core.auth import Claims, Role
from adx_core.contracts.files import VALIDATE_SHARE_ACTIVITY, FileShareRequest
from adx_core.contracts.files import ValidateShareResult as Validated
from adx_core.contracts.progress import PROGRESS_QUERY, ProgressQuery, ProgressSnapshot
from adx_core.db.engine import Sessions, tenant_session
from tests.integration.sharing.conftest import Api, Scene, SharingWorkerFactory, share
from tests.support.mail import Mailbox


async def access_of(sessions: Sessions, scene: Scene, name: str) -> Access | None:
    async with tenant_session(sessions, scene.acme) as session:
        return await access_to(session, scene.file.id, scene.user(name))


async def content_as(api: Api, scene: Scene, name: str) -> tuple[int, bytes]:
    response = await api.get(f"/v1/files/{scene.file.id}/content", headers=scene.headers(name))
    return response.status, await response.read()


async def shares_in_db(scene: Scene) -> list[Any]:
    return await scene.world.rows("SELECT id, revoked_at FROM file_shares")


async def grants_in_db(scene: Scene) -> list[Any]:
    return await scene.world.rows(
        "SELECT principal_id, role FROM file_permissions WHERE share_id IS NOT NULL"
    )


async def test_grant_notifies_the_grantee_who_can_then_read_until_revoked(
    api: Api, scene: Scene, sharing_worker: Worker, mailbox: Mailbox, sessions: Sessions
) -> None:
    assert await access_of(sessions, scene, "bob") is None
    assert (await content_as(api, scene, "bob"))[0] == 404

    operation = await share(
        api,
        scene,
        {"grantees": [{"kind": "user", "id": str(scene.user("bob"))}], "message": "For Q3"},
    )

    assert operation["status"] == "succeeded", operation
    assert operation["type"] == "file_sharing_workflow"
    result = operation["result"]
    assert result["role"] == "viewer"
    assert result["grants"] == 1
    assert result["notified"] == 1
    assert result["link"] is None
    (mail,) = await asyncio.to_thread(mailbox.wait_for, scene.email("bob"))
    assert mail["Subject"] == 'Olivia shared "Q3 report.pdf" with you'
    body = mail.get_content()
    assert "as viewer" in body
    assert f"/v1/files/{scene.file.id}" in body
    assert "Olivia wrote: For Q3" in body

    # The grantee reads the file: through the access rule every file route uses, and
    # through the content route.
    assert await access_of(sessions, scene, "bob") == Access.VIEW
    bob = Claims(str(scene.user("bob")), str(scene.acme), (Role.MEMBER,))
    async with tenant_session(sessions, scene.acme) as session:
        assert (await require_file(session, bob, scene.file.id, Access.VIEW)).id == scene.file.id
        with pytest.raises(ProblemError) as refused:
            await require_file(session, bob, scene.file.id, Access.EDIT)
    assert refused.value.status == 403
    assert await content_as(api, scene, "bob") == (200, scene.file.content)

    listed = await api.get(f"/v1/files/{scene.file.id}/shares", headers=scene.headers("olivia"))
    assert listed.status == 200
    (entry,) = (await listed.json())["shares"]
    assert entry["id"] == result["share_id"]
    assert entry["kind"] == "grant"
    assert entry["grantees"] == [{"kind": "user", "id": str(scene.user("bob"))}]
    assert "hash" not in await listed.text()
    audit = await scene.world.rows("SELECT action, actor_id, details FROM audit_log")
    assert [(a.action, a.actor_id) for a in audit] == [("file.shared", str(scene.user("olivia")))]

    # Revoked: the grant is gone at once.
    gone = await api.delete(
        f"/v1/files/{scene.file.id}/shares/{result['share_id']}", headers=scene.headers("olivia")
    )
    assert gone.status == 204
    assert await access_of(sessions, scene, "bob") is None
    assert (await content_as(api, scene, "bob"))[0] == 404
    assert await grants_in_db(scene) == []
    listed = await api.get(f"/v1/files/{scene.file.id}/shares", headers=scene.headers("olivia"))
    assert (await listed.json())["shares"] == []
    again = await api.delete(
        f"/v1/files/{scene.file.id}/shares/{result['share_id']}", headers=scene.headers("olivia")
    )
    assert again.status == 204


async def test_group_grant_reaches_members_and_ends_with_membership(
    api: Api, scene: Scene, sharing_worker: Worker, mailbox: Mailbox, sessions: Sessions
) -> None:
    operation = await share(
        api, scene, {"grantees": [{"kind": "group", "id": str(scene.team)}], "role": "editor"}
    )

    assert operation["status"] == "succeeded", operation
    assert operation["result"]["grants"] == 1
    assert operation["result"]["notified"] == 2
    for name in ("carol", "dave"):
        (mail,) = await asyncio.to_thread(mailbox.wait_for, scene.email(name))
        assert "as editor" in mail.get_content()
        assert await access_of(sessions, scene, name) == Access.EDIT
    assert await access_of(sessions, scene, "bob") is None

    # An editor may share onward; the tenant admin removes Dave from the group.
    onward = await share(
        api, scene, {"grantees": [{"kind": "user", "id": str(scene.user("bob"))}]}, by="carol"
    )
    assert onward["status"] == "succeeded", onward
    removed = await api.delete(
        f"/v1/groups/{scene.team}/members/{scene.user('dave')}", headers=scene.headers("ada")
    )
    assert removed.status == 204
    assert await access_of(sessions, scene, "dave") is None
    assert await access_of(sessions, scene, "carol") == Access.EDIT


async def test_sharing_with_another_tenant_is_refused_and_leaves_nothing(
    api: Api, scene: Scene, sharing_worker: Worker, mailbox: Mailbox
) -> None:
    for grantee in (
        {"kind": "user", "id": str(scene.user("eve"))},
        {"kind": "group", "id": str(scene.other_group)},
        {"kind": "user", "id": str(uuid.uuid4())},
    ):
        operation = await share(
            api,
            scene,
            {"grantees": [{"kind": "user", "id": str(scene.user("bob"))}, grantee]},
        )
        assert operation["status"] == "failed", operation
        assert operation["error"]["code"] == "ShareRefused"
        assert operation["error"]["step"] == "validate_share"

    assert await shares_in_db(scene) == []
    assert await grants_in_db(scene) == []
    assert mailbox.messages == []


async def test_a_refused_mail_is_recorded_and_the_share_stays(
    api: Api,
    scene: Scene,
    sharing_worker: Worker,
    mailbox: Mailbox,
    sessions: Sessions,
    temporal_client: Any,
) -> None:
    mailbox.refuse.add(scene.email("carol"))

    operation = await share(api, scene, {"grantees": [{"kind": "group", "id": str(scene.team)}]})

    assert operation["status"] == "succeeded", operation
    assert operation["result"]["notified"] == 1
    assert operation["result"]["notify_failed"] == 1
    assert await access_of(sessions, scene, "carol") == Access.VIEW
    assert len(await asyncio.to_thread(mailbox.wait_for, scene.email("dave"))) == 1
    snapshot = await temporal_client.get_workflow_handle(operation["id"]).query(
        PROGRESS_QUERY, ProgressQuery(0), result_type=ProgressSnapshot
    )
    assert snapshot.counters["notify_failed"] == 1
    failed = [e for e in snapshot.events if e.kind == "step_failed"]
    assert [e.step for e in failed] == ["notify_recipients"]
    assert "the share stays" in (failed[0].detail or "")


async def test_same_idempotency_key_makes_one_share(
    api: Api, scene: Scene, sharing_worker: Worker, mailbox: Mailbox
) -> None:
    body = {"link": True, "expires_in_seconds": 3600}
    first = await share(api, scene, body, **{"Idempotency-Key": "share-once-1"})
    second = await share(api, scene, body, **{"Idempotency-Key": "share-once-1"})
    other = await share(api, scene, body, **{"Idempotency-Key": "share-once-2"})

    assert first["id"] == second["id"]
    assert first["result"] == second["result"]
    assert other["result"]["share_id"] != first["result"]["share_id"]
    assert len(await shares_in_db(scene)) == 2
    # A concurrent retry joins the same workflow.
    racing = await asyncio.gather(
        *(
            api.post(
                f"/v1/files/{scene.file.id}/shares",
                json=body,
                headers={**scene.headers("olivia"), "Idempotency-Key": "share-once-3"},
            )
            for _ in range(3)
        )
    )
    assert {r.status for r in racing} == {202}
    assert len({(await r.json())["id"] for r in racing}) == 1


def hanging_validation(started: asyncio.Event) -> Any:
    """A validate step that waits until it is cancelled."""

    @activity.defn(name=VALIDATE_SHARE_ACTIVITY)
    async def validate(request: FileShareRequest) -> Validated:
        started.set()
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.1)

    return validate


async def test_a_cancel_before_the_share_exists_leaves_nothing(
    api: Api, scene: Scene, sharing_worker_with: SharingWorkerFactory, mailbox: Mailbox
) -> None:
    started = asyncio.Event()
    async with sharing_worker_with(hanging_validation(started)):
        response = await api.post(
            f"/v1/files/{scene.file.id}/shares",
            json={"grantees": [{"kind": "user", "id": str(scene.user("bob"))}]},
            headers=scene.headers("olivia"),
        )
        assert response.status == 202
        location = response.headers["Location"]
        await asyncio.wait_for(started.wait(), 10)
        cancel = await api.post(f"{location}/cancel", headers=scene.headers("olivia"))
        assert cancel.status == 202
        final = await _until_done(api, location, scene.headers("olivia"))

    assert final["status"] == "cancelled", final
    assert await shares_in_db(scene) == []
    assert await grants_in_db(scene) == []
    assert mailbox.messages == []


async def _until_done(api: Api, location: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timedelta(seconds=20).total_seconds()
    while asyncio.get_running_loop().time() < deadline:
        operation: dict[str, Any] = await (await api.get(location, headers=headers)).json()
        if operation["status"] in ("succeeded", "failed", "cancelled"):
            return operation
        await asyncio.sleep(0.1)
    raise AssertionError(f"{location} did not finish")
