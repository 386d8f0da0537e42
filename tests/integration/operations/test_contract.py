"""One contract for every workflow operation: 202, or 200 under ``Prefer: wait`` when the
workflow finishes in time; its result, its cancel, and its privacy across tenants."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from adx_core.auth import Role
from adx_workers.resources import WorkerResources
from tests.conftest import TokenFactory
from tests.integration.operations.conftest import (
    Client,
    slow_activation,
    start_tenant,
    tenant_body,
)
from tests.integration.test_compensation import leftovers
from tests.integration.test_tenant_slice import auth, wait_for_status, wait_for_step
from tests.support.workers import WorkerFactory

OPERATION_KEYS = {"id", "type", "status", "progress", "created_at", "links"}


async def test_no_prefer_answers_202_with_the_operation(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    response = await api.post("/v1/tenants", json=tenant_body(), headers=auth(token()))
    assert response.status == 202
    operation = await response.json()
    assert set(operation) >= OPERATION_KEYS
    assert operation["type"] == "tenant_provisioning_workflow"
    assert operation["status"] == "pending"
    assert response.headers["Location"] == f"/v1/operations/{operation['id']}"
    assert set(operation["links"]) == {"self", "events", "cancel", "result"}
    assert "Preference-Applied" not in response.headers


async def test_prefer_wait_on_a_fast_workflow_answers_200_with_the_result(
    api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    response = await api.post(
        "/v1/tenants", json=tenant_body(), headers={**auth(token()), "Prefer": "wait=10"}
    )
    assert response.status == 200, await response.text()
    assert response.headers["Preference-Applied"] == "wait=10"
    operation = await response.json()
    assert operation["status"] == "succeeded"
    assert operation["result"]["tenant_id"]
    assert operation["progress"]["percent"] == 100


async def test_prefer_wait_shorter_than_the_workflow_answers_202(
    api: Client, token: TokenFactory, worker_with: WorkerFactory, resources: WorkerResources
) -> None:
    async with worker_with(slow_activation(resources, 3)):
        started = asyncio.get_running_loop().time()
        response = await api.post(
            "/v1/tenants", json=tenant_body(), headers={**auth(token()), "Prefer": "wait=1"}
        )
        waited = asyncio.get_running_loop().time() - started
        assert response.status == 202
        assert response.headers["Preference-Applied"] == "wait=1"
        assert 0.9 < waited < 5  # the wait, then a describe and a progress query
        operation = await response.json()
        assert operation["status"] in ("pending", "running")
        await wait_for_status(api, token(), response.headers["Location"])


async def test_result_follows_the_operation(
    api: Client, token: TokenFactory, worker_with: WorkerFactory, resources: WorkerResources
) -> None:
    admin = token()
    async with worker_with(slow_activation(resources, 1.5)):
        operation = await start_tenant(api, admin)
        result_url = operation["links"]["result"]
        early = await api.get(result_url, headers=auth(admin))
        assert early.status == 409
        assert early.headers["Retry-After"] == "1"
        problem = await early.json()
        assert problem["type"].endswith("/operation-not-finished")
        waited = await api.get(result_url, headers={**auth(admin), "Prefer": "wait=10"})
        assert waited.status == 200, await waited.text()
    result = await waited.json()
    assert result["tenant_id"] == operation["id"].removeprefix("tenant-provisioning-")
    again = await api.get(result_url, headers=auth(admin))
    assert await again.json() == result


async def test_cancel_with_prefer_wait_answers_once_the_compensation_ran(
    api: Client,
    token: TokenFactory,
    worker_with: WorkerFactory,
    resources: WorkerResources,
    owner_engine: AsyncEngine,
) -> None:
    admin = token()
    async with worker_with(slow_activation(resources, 30)):
        operation = await start_tenant(api, admin)
        await wait_for_step(api, admin, operation["links"]["self"], "activate_tenant")
        cancel = await api.post(
            operation["links"]["cancel"], headers={**auth(admin), "Prefer": "wait=20"}
        )
        assert cancel.status == 200, await cancel.text()
        cancelled = await cancel.json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["error"]["step"] == "activate_tenant"
        # Everything provisioning made is gone by the time the answer arrives.
        left = await leftovers(owner_engine)
        assert left["memberships"] == left["tenant_quotas"] == left["users"] == 0
        result = await api.get(operation["links"]["result"], headers=auth(admin))
        assert result.status == 409
        assert (await result.json())["type"].endswith("/operation-cancelled")


async def test_another_tenants_operation_is_404_on_every_operations_route(
    api: Client, token: TokenFactory, worker_with: WorkerFactory, resources: WorkerResources
) -> None:
    async with worker_with(slow_activation(resources, 30)):
        operation = await start_tenant(api, token())
        for role in (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, Role.MEMBER):
            stranger = auth(token(role=role, tenant_id=str(uuid.uuid4())))
            for method, url in (
                ("GET", operation["links"]["self"]),
                ("GET", operation["links"]["events"]),
                ("GET", operation["links"]["result"]),
                ("POST", operation["links"]["cancel"]),
                ("POST", f"{operation['links']['self']}/stream-token"),
            ):
                response = await api.request(method, url, headers=stranger)
                assert response.status == 404, (role, method, url)
                assert response.content_type == "application/problem+json"
            listed = await api.get("/v1/operations", headers=stranger)
            assert (await listed.json())["items"] == []
        # Still running: the stranger's cancel did nothing.
        shown = await api.get(operation["links"]["self"], headers=auth(token()))
        assert (await shown.json())["status"] in ("pending", "running")
        cancel = await api.post(
            operation["links"]["cancel"], headers={**auth(token()), "Prefer": "wait=20"}
        )
        assert (await cancel.json())["status"] == "cancelled"
