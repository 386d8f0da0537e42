"""Link shares: GET /s/{token} without a bearer token, its password (HTTP Basic, argon2,
limited), its expiry (checked on every access), its revocation, and what is stored."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from tests.integration.sharing.conftest import Api, Scene, share
from tests.support.mail import Mailbox

PASSWORD = "correct horse battery"


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def make_link(api: Api, scene: Scene, **body: Any) -> dict[str, Any]:
    operation = await share(api, scene, {"link": True, "expires_in_seconds": 3600, **body})
    assert operation["status"] == "succeeded", operation
    result: dict[str, Any] = operation["result"]
    assert result["link"].startswith("/s/")
    return result


async def test_password_link_serves_the_file_to_whoever_knows_the_password(
    api: Api, scene: Scene, sharing_worker: Worker, mailbox: Mailbox, temporal_client: Client
) -> None:
    result = await make_link(
        api, scene, password=PASSWORD, notify=["Partner@Elsewhere.example"], message="Hi"
    )
    link = result["link"]
    token = link.removeprefix("/s/")
    assert result["grants"] == 0
    assert result["notified"] == 1

    missing = await api.get(link)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="shared file"'
    assert missing.content_type == "application/problem+json"
    wrong = await api.get(link, headers=basic("not the password"))
    assert wrong.status == 401
    garbled = await api.get(link, headers={"Authorization": "Basic %%%"})
    assert garbled.status == 401
    # A bearer token is no password.
    bearer = await api.get(link, headers=scene.headers("olivia"))
    assert bearer.status == 401

    served = await api.get(link, headers=basic(PASSWORD, user=""))
    assert served.status == 200
    assert await served.read() == scene.file.content
    assert served.headers["Content-Type"] == "application/pdf"
    assert served.headers["Content-Length"] == str(len(scene.file.content))
    assert served.headers["Content-Disposition"] == (
        "attachment; filename=\"Q3 report.pdf\"; filename*=UTF-8''Q3%20report.pdf"
    )
    assert served.headers["Cache-Control"] == "private, no-store"
    assert served.headers["X-Content-Type-Options"] == "nosniff"

    # The recipient's mail names the link, never the password.
    (mail,) = await asyncio.to_thread(mailbox.wait_for, "partner@elsewhere.example")
    body = mail.get_content()
    assert link in body
    assert PASSWORD not in body

    # Only hashes are stored, and the token is in no history in clear text.
    (row,) = await scene.world.rows(
        "SELECT token_hash, password_hash, grantees, expires_at FROM file_shares"
    )
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.password_hash.startswith("$argon2id$")
    dump = " ".join(str(r) for r in await scene.world.rows("SELECT * FROM file_shares")) + " ".join(
        str(r) for r in await scene.world.rows("SELECT * FROM audit_log")
    )
    assert token not in dump
    assert PASSWORD not in dump
    history = await temporal_client.get_workflow_handle(
        f"file-share-{result['share_id']}"
    ).fetch_history()
    assert token not in history.to_json()


async def test_wrong_passwords_are_limited_per_link(
    api: Api, scene: Scene, sharing_worker: Worker
) -> None:
    limited = (await make_link(api, scene, password=PASSWORD))["link"]
    other = (await make_link(api, scene, password=PASSWORD))["link"]

    for _ in range(10):
        assert (await api.get(limited, headers=basic("guess-guess"))).status == 401
    blocked = await api.get(limited, headers=basic(PASSWORD))
    assert blocked.status == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    # Another link is not affected.
    assert (await api.get(other, headers=basic(PASSWORD))).status == 200


async def test_an_open_link_expires_on_time(api: Api, scene: Scene, sharing_worker: Worker) -> None:
    result = await make_link(api, scene, expires_in_seconds=2)
    served = await api.get(result["link"])
    assert served.status == 200
    assert await served.read() == scene.file.content
    listed = await api.get(f"/v1/files/{scene.file.id}/shares", headers=scene.headers("olivia"))
    assert len((await listed.json())["shares"]) == 1

    deadline = time.monotonic() + 10
    while (await api.get(result["link"])).status == 200:
        assert time.monotonic() < deadline, "the link outlived its expiry"
        await asyncio.sleep(0.25)

    expired = await api.get(result["link"])
    assert expired.status == 410
    listed = await api.get(f"/v1/files/{scene.file.id}/shares", headers=scene.headers("olivia"))
    assert (await listed.json())["shares"] == []


async def test_a_revoked_link_is_gone_at_once(
    api: Api, scene: Scene, sharing_worker: Worker
) -> None:
    result = await make_link(api, scene)
    assert (await api.get(result["link"])).status == 200
    path = f"/v1/files/{scene.file.id}/shares/{result['share_id']}"

    # Bob sees the file (a grant) but neither made the link nor owns the file.
    grant = await share(api, scene, {"grantees": [{"kind": "user", "id": str(scene.user("bob"))}]})
    assert grant["status"] == "succeeded"
    assert (await api.delete(path, headers=scene.headers("bob"))).status == 403
    # Eve's tenant does not have the file at all.
    assert (await api.delete(path, headers=scene.headers("eve"))).status == 404
    assert (await api.get(result["link"])).status == 200

    assert (await api.delete(path, headers=scene.headers("ada"))).status == 204
    assert (await api.get(result["link"])).status == 404
    audit = await scene.world.rows(
        "SELECT actor_id FROM audit_log WHERE action = 'file.share_revoked'"
    )
    assert [a.actor_id for a in audit] == [str(scene.user("ada"))]


async def test_unknown_and_malformed_links_are_not_found(
    api: Api, scene: Scene, sharing_worker: Worker
) -> None:
    await make_link(api, scene)
    for path in ("/s/" + "A" * 43, "/s/short", "/s/" + "%2e%2e%2f" * 5, "/s/" + "A" * 44):
        response = await api.get(path)
        assert response.status == 404, path
        assert response.content_type == "application/problem+json"
    # The file behind a link is served only while it is ready.
    result = await make_link(api, scene)
    await scene.world.execute(
        "UPDATE files SET status = 'rejected' WHERE id = :id", id=scene.file.id
    )
    assert (await api.get(result["link"])).status == 404
