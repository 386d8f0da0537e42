"""POST /v1/storage/migrations and the storage reads, through HTTP: what a frontend does,
and every way the input can be wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from adx_core.auth import Role
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry
from tests.conftest import TokenFactory
from tests.integration.files.conftest import SeededTenant, listing, record_providers, seed_tenant
from tests.integration.test_tenant_slice import auth, wait_for_status

Client = TestClient[web.Request, web.Application]
URL = "/v1/storage/migrations"


@pytest.fixture
async def seeded(owner_engine: AsyncEngine, stores: StorageRegistry) -> SeededTenant:
    return await seed_tenant(owner_engine, stores.get("local"), files=30)


def admin_of(token: TokenFactory, seeded: SeededTenant, role: Role = Role.TENANT_ADMIN) -> str:
    return token(role, tenant_id=seeded.tenant_id)


async def test_a_tenant_admin_moves_the_files_and_watches_the_events(
    api: Client,
    token: TokenFactory,
    seeded: SeededTenant,
    files_worker: Worker,
    settings: Settings,
    owner_engine: AsyncEngine,
) -> None:
    bearer = admin_of(token, seeded)
    response = await api.post(URL, json={"target": "azure", "batch_size": 10}, headers=auth(bearer))
    assert response.status == 202, await response.text()
    operation = await response.json()
    assert operation["type"] == "file_migration_workflow"
    location = response.headers["Location"]
    assert location == f"/v1/operations/{operation['id']}"

    events: list[dict[str, Any]] = []
    async with api.get(f"{location}/events", headers=auth(bearer)) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        async for raw in stream.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    final = await wait_for_status(api, bearer, location)
    assert final["status"] == "succeeded", final
    assert final["result"]["target"] == "azure"
    assert final["result"]["records_switched"] == 30
    percents = [e["percent"] for e in events if "percent" in e]
    assert percents == sorted(percents)
    assert any(e.get("phase") == "progress" for e in events)
    assert await record_providers(owner_engine, seeded.tenant_id) == {"azure": 30}

    listed = await api.get(URL, headers=auth(bearer))
    assert listed.status == 200
    (migration,) = (await listed.json())["items"]
    assert migration["status"] == "committed"
    assert migration["target_used"] == "azure"
    assert migration["result"]["files_copied"] == 33

    providers = await (await api.get("/v1/storage/providers", headers=auth(bearer))).json()
    assert providers["tenant"] == "azure"
    assert set(providers["configured"]) == {"local", "s3", "gcs", "azure"}


async def test_a_cancel_through_the_api_rolls_back(
    api: Client,
    token: TokenFactory,
    settings: Settings,
    files_worker: Worker,
    owner_engine: AsyncEngine,
    stores: StorageRegistry,
) -> None:
    seeded = await seed_tenant(owner_engine, stores.get("local"), files=200, unrecorded=0)
    bearer = admin_of(token, seeded)
    response = await api.post(
        URL, json={"target": "s3", "batch_size": 5, "parallelism": 1}, headers=auth(bearer)
    )
    assert response.status == 202
    location = response.headers["Location"]
    # A second migration of the same tenant while the first runs is a conflict.
    again = await api.post(URL, json={"target": "gcs"}, headers=auth(bearer))
    assert again.status == 409
    cancel = await api.post(f"{location}/cancel", headers=auth(bearer))
    assert cancel.status == 202
    final = await wait_for_status(api, bearer, location, within=60)
    assert final["status"] == "cancelled"
    assert await listing(stores.get("s3"), seeded.prefix) == {}
    assert await record_providers(owner_engine, seeded.tenant_id) == {"local": 200}


async def test_a_platform_admin_moves_any_tenant(
    api: Client, token: TokenFactory, seeded: SeededTenant, files_worker: Worker
) -> None:
    response = await api.post(
        URL,
        json={"target": "gcs", "tenant_id": seeded.tenant_id},
        headers={**auth(token()), "Prefer": "wait=30"},
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["result"]["target"] == "gcs"
    listed = await api.get(f"{URL}?tenant_id={seeded.tenant_id}", headers=auth(token()))
    assert len((await listed.json())["items"]) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"target": "ftp"}, 422),
        ({"target": "local"}, 422),  # the files are in local already
        ({"target": "s3", "source": "s3"}, 422),
        ({"target": "s3", "fallback_targets": ["azure", "azure"]}, 422),
        ({"target": "s3", "fallback_targets": ["azure", "gcs", "local", "s3"]}, 422),
        ({"target": "s3", "fallback_targets": ["local"]}, 422),
        ({"target": "s3", "batch_size": 0}, 422),
        ({"target": "s3", "batch_size": 1001}, 422),
        ({"target": "s3", "parallelism": 65}, 422),
        ({"target": "s3", "prefix": "../other-tenant/"}, 422),
        ({"target": "s3", "prefix": "/etc/"}, 422),
        ({"target": "s3", "prefix": "a\x00b/"}, 422),
        ({"target": "s3", "prefix": "x" * 600}, 422),
        ({"target": "s3", "delete_source": "yes please"}, 422),
        ({"target": "s3", "surprise": True}, 422),
        ({"target": ["s3"]}, 422),
        ([], 422),
    ],
)
async def test_bad_requests_are_refused_and_start_nothing(
    api: Client,
    token: TokenFactory,
    seeded: SeededTenant,
    body: Any,
    status: int,
    owner_engine: AsyncEngine,
) -> None:
    response = await api.post(URL, json=body, headers=auth(admin_of(token, seeded)))
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/problem+json")
    listed = await api.get(URL, headers=auth(admin_of(token, seeded)))
    assert (await listed.json())["items"] == []


async def test_malformed_and_oversized_bodies(
    api: Client, token: TokenFactory, seeded: SeededTenant, settings: Settings
) -> None:
    headers = {**auth(admin_of(token, seeded)), "Content-Type": "application/json"}
    assert (await api.post(URL, data=b"{not json", headers=headers)).status == 400
    assert (await api.post(URL, data=b"[" * 100_000, headers=headers)).status in (400, 413)
    big = json.dumps({"target": "s3", "prefix": "a" * (settings.max_body_bytes + 10)})
    assert (await api.post(URL, data=big.encode(), headers=headers)).status == 413
    plain = {**auth(admin_of(token, seeded)), "Content-Type": "text/plain"}
    assert (await api.post(URL, data=b"target=s3", headers=plain)).status == 415


async def test_roles_and_tenants_are_enforced(
    api: Client, token: TokenFactory, seeded: SeededTenant, settings: Settings
) -> None:
    body = {"target": "s3"}
    assert (await api.post(URL, json=body)).status == 401
    for role in (Role.MEMBER, Role.VIEWER):
        response = await api.post(URL, json=body, headers=auth(admin_of(token, seeded, role)))
        assert response.status == 403
    # Another tenant's admin naming this tenant gets a 404, as if it did not exist.
    stranger = token(Role.TENANT_ADMIN, tenant_id="3f9a2b1c-0d4e-4f5a-8b6c-7d8e9f0a1b2c")
    other = {**body, "tenant_id": seeded.tenant_id}
    assert (await api.post(URL, json=other, headers=auth(stranger))).status == 404
    reads = (
        f"{URL}?tenant_id={seeded.tenant_id}",
        f"/v1/storage/providers?tenant_id={seeded.tenant_id}",
    )
    for path in reads:
        assert (await api.get(path, headers=auth(stranger))).status == 404
    assert (await api.get(f"{URL}?tenant_id=not-a-uuid", headers=auth(stranger))).status == 404
    # A tenant that does not exist (a platform admin can name any id) is a 404 too.
    ghost = {**body, "tenant_id": "3f9a2b1c-0d4e-4f5a-8b6c-7d8e9f0a1b2c"}
    assert (await api.post(URL, json=ghost, headers=auth(token()))).status == 404


async def test_a_provider_this_deployment_lacks_is_named(
    api: Client, token: TokenFactory, seeded: SeededTenant, settings: Settings
) -> None:
    """The files fixtures configure every provider; an API without Azure says so."""
    from aiohttp.test_utils import TestServer

    from adx_api.app import create_app

    bare = settings.model_copy(update={"azure_container": None, "azure_connection_string": None})
    app = create_app(bare, temporal=api.app[_temporal_key()], sessions=api.app[_sessions_key()])
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            URL, json={"target": "azure"}, headers=auth(admin_of(token, seeded))
        )
        assert response.status == 422
        assert "azure" in (await response.json())["detail"]


def _temporal_key() -> Any:
    from adx_api.keys import TEMPORAL

    return TEMPORAL


def _sessions_key() -> Any:
    from adx_api.keys import SESSIONS

    return SESSIONS
