"""The API live on a loopback port, on the real stack: PostgreSQL, Temporal, and the
tenants, users and files workers, with a throwaway tenant and one of each kind of resource
(a file, its link share, a group, a resumable upload, a finished operation) so that
generated requests can reach past "not found"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.auth import Role
from adx_core.db.engine import Sessions
from adx_core.settings import ScannerKind, Settings
from adx_workers.files.worker import build_worker as build_files_worker
from adx_workers.resources import WorkerResources
from adx_workers.users.worker import build_worker as build_users_worker
from tests.conftest import TokenFactory
from tests.support.tenancy import SeededTenant, seed_tenant


@dataclass
class LiveApi:
    """Where the API listens, who calls it, and ids of resources that exist."""

    base_url: str
    tenant: SeededTenant
    # The throwaway tenant's admin, and a platform admin for the platform-only routes.
    admin_token: str
    platform_token: str
    # Path parameter values by resource kind: tenant, user, file, share, link, group,
    # upload, operation.
    known: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            # The development scanner: no clamd needed, and EICAR is still refused.
            "scanner": ScannerKind.EICAR,
            "processing_deadline_seconds": 20.0,
            # The run is one tenant's burst of requests: counted (so the RateLimit headers
            # are checked) but not refused; the limit has tests of its own.
            "rate_limit_requests": 100_000,
        }
    )


@pytest.fixture
async def users_worker(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> AsyncIterator[Worker]:
    async with build_users_worker(temporal_client, resources, settings.task_queue("users")) as w:
        yield w


@pytest.fixture
async def files_worker(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> AsyncIterator[Worker]:
    async with build_files_worker(temporal_client, resources, settings.task_queue("files")) as w:
        yield w


@pytest.fixture
async def live_api(
    settings: Settings,
    temporal_client: Client,
    sessions: Sessions,
    token: TokenFactory,
    tenants_worker: Worker,
    users_worker: Worker,
    files_worker: Worker,
) -> AsyncIterator[LiveApi]:
    from adx_api.app import create_app

    tenant = await seed_tenant(sessions)
    app = create_app(settings, temporal=temporal_client, sessions=sessions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        live = LiveApi(
            base_url=str(server.make_url("")).rstrip("/"),
            tenant=tenant,
            admin_token=tenant.token(settings, "admin"),
            platform_token=token(Role.PLATFORM_ADMIN),
        )
        await _make_resources(live)
        yield live
    finally:
        await server.close()


async def _make_resources(live: LiveApi) -> None:
    """One resource of each kind, made through the API as a client would."""
    auth = {"Authorization": f"Bearer {live.admin_token}"}
    known = live.known
    known["tenant"] = live.tenant.tenant_id
    known["user"] = live.tenant.members["bob"].user_id
    async with ClientSession(live.base_url) as http:
        async with http.post(
            "/v1/files",
            params={"name": "notes.txt"},
            data=b"plain words, nothing to scan for\n",
            headers={**auth, "Content-Type": "text/plain", "Prefer": "wait=30"},
        ) as response:
            operation = await response.json()
            assert response.status == 200, operation
            assert operation["status"] == "succeeded", operation
        known["operation"] = operation["id"]
        known["file"] = operation["result"]["file_id"]
        async with http.post(
            f"/v1/files/{known['file']}/shares",
            json={"link": True, "expires_in_seconds": 3600},
            headers={**auth, "Prefer": "wait=30"},
        ) as response:
            share = await response.json()
            assert response.status == 200, share
            assert share["status"] == "succeeded", share
        known["share"] = share["result"]["share_id"]
        known["link"] = share["result"]["link"].rsplit("/", 1)[-1]
        async with http.post("/v1/groups", json={"name": "fuzzers"}, headers=auth) as response:
            group = await response.json()
            assert response.status == 201, group
        known["group"] = group["id"]
        async with http.post(
            "/v1/uploads",
            params={"name": "later.bin"},
            headers={**auth, "Tus-Resumable": "1.0.0", "Upload-Length": "10"},
        ) as response:
            assert response.status == 201, await response.text()
            known["upload"] = response.headers["Location"].rsplit("/", 1)[-1]
