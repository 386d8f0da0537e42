"""Sharing tests: two tenants seeded as the schema owner (users, roles, a group, ready files
with their bytes in local storage and an owner grant), a worker that runs
file_sharing_workflow with the real notification activity on this test's files queue, and
helpers to call the API and wait for operations."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from adx_core.auth import Role, mint_token
from adx_core.contracts.permissions import DEFAULT_ROLE_PERMISSIONS
from adx_core.contracts.storage import FILES_TASK_QUEUE
from adx_core.settings import Settings
from adx_core.storage import StorageRegistry
from adx_workers.common.notify import NotificationActivities
from adx_workers.files.sharing import FileSharingWorkflow
from adx_workers.files.sharing_activities import SharingActivities
from adx_workers.resources import WorkerResources
from adx_workers.sandbox import workflow_runner
from tests.support.workers import activity_name

Api = TestClient[web.Request, web.Application]
Headers = dict[str, str]


def sharing_worker_for(
    client: Client,
    resources: WorkerResources,
    task_queue: str,
    fakes: Sequence[Callable[..., Any]] = (),
) -> Worker:
    """file_sharing_workflow with its real activities (``fakes`` replace some by name)."""
    notify = NotificationActivities(resources.sessions, resources.notifier)
    activities = {
        activity_name(a): a
        for a in [*SharingActivities(resources.sessions).all(), notify.send_notification]
    }
    for fake in fakes:
        assert activity_name(fake) in activities, f"no activity named {activity_name(fake)}"
        activities[activity_name(fake)] = fake
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[FileSharingWorkflow],
        activities=list(activities.values()),
        workflow_runner=workflow_runner(),
        # Fakes that wait for a cancel learn of it on their next heartbeat; don't throttle.
        default_heartbeat_throttle_interval=timedelta(milliseconds=200),
        max_heartbeat_throttle_interval=timedelta(milliseconds=200),
    )


SharingWorkerFactory = Callable[..., Worker]


@pytest.fixture
def sharing_worker_with(
    settings: Settings, temporal_client: Client, resources: WorkerResources
) -> SharingWorkerFactory:
    def make(*fakes: Callable[..., Any]) -> Worker:
        return sharing_worker_for(
            temporal_client, resources, settings.task_queue(FILES_TASK_QUEUE), fakes
        )

    return make


@pytest.fixture
async def sharing_worker(sharing_worker_with: SharingWorkerFactory) -> AsyncIterator[Worker]:
    async with sharing_worker_with() as worker:
        yield worker


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass
class SharedFile:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    content: bytes


@dataclass
class World:
    """Tenants, users, groups and files written as the owner (past RLS), and tokens."""

    engine: AsyncEngine
    settings: Settings
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(sql), params)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def tenant(self, slug: str) -> uuid.UUID:
        tenant_id = uuid.uuid4()
        await self.execute(
            "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix)"
            " VALUES (:id, :slug, :name, 'pro', 'active', :prefix)",
            id=tenant_id,
            slug=slug,
            name=slug.title(),
            prefix=f"tenants/{tenant_id}/",
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tenant_role_permissions (tenant_id, role, permission)"
                    " VALUES (:t, :r, :p)"
                ),
                [
                    {"t": tenant_id, "r": role, "p": permission}
                    for role, permissions in DEFAULT_ROLE_PERMISSIONS.items()
                    for permission in permissions
                ],
            )
        return tenant_id

    async def user(self, name: str, tenant_id: uuid.UUID, role: str = "member") -> uuid.UUID:
        user_id = uuid.uuid4()
        await self.execute(
            "INSERT INTO users (id, email, name) VALUES (:id, :email, :name)",
            id=user_id,
            email=f"{name}@example.test",
            name=name.title(),
        )
        await self.execute(
            "INSERT INTO memberships (tenant_id, user_id, role) VALUES (:t, :u, :r)",
            t=tenant_id,
            u=user_id,
            r=role,
        )
        self.users[name] = user_id
        self.roles[name] = role
        return user_id

    async def group(self, tenant_id: uuid.UUID, name: str, members: list[uuid.UUID]) -> uuid.UUID:
        group_id = uuid.uuid4()
        await self.execute(
            "INSERT INTO groups (id, tenant_id, name) VALUES (:id, :t, :name)",
            id=group_id,
            t=tenant_id,
            name=name,
        )
        for member in members:
            await self.execute(
                "INSERT INTO group_members (group_id, user_id, tenant_id) VALUES (:g, :u, :t)",
                g=group_id,
                u=member,
                t=tenant_id,
            )
        return group_id

    async def file(
        self,
        tenant_id: uuid.UUID,
        owner: uuid.UUID,
        name: str = "report.pdf",
        *,
        status: str = "ready",
        content: bytes | None = None,
    ) -> SharedFile:
        """A file as file_upload_workflow leaves it: its bytes under the tenant's files
        prefix, its record, and its owner's grant."""
        file_id = uuid.uuid4()
        data = content if content is not None else f"%PDF-1.7 {file_id}\n".encode() * 100
        key = f"tenants/{tenant_id}/files/{file_id}"
        stores = StorageRegistry(self.settings)
        try:
            info = await stores.get("local").put(key, _chunks(data), content_type="application/pdf")
        finally:
            await stores.close()
        await self.execute(
            "INSERT INTO files (id, tenant_id, name, content_type, size_bytes, checksum_sha256,"
            " storage_provider, storage_key, status, created_by) VALUES (:id, :t, :name,"
            " 'application/pdf', :size, :sha, 'local', :key, :status, :owner)",
            id=file_id,
            t=tenant_id,
            name=name,
            size=len(data),
            sha=info.sha256 or hashlib.sha256(data).hexdigest(),
            key=key,
            status=status,
            owner=owner,
        )
        await self.execute(
            "INSERT INTO file_permissions (id, tenant_id, file_id, principal_kind, principal_id,"
            " role) VALUES (:id, :t, :f, 'user', :u, 'owner')",
            id=uuid.uuid4(),
            t=tenant_id,
            f=file_id,
            u=owner,
        )
        return SharedFile(file_id, tenant_id, name, data)

    def token(self, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str = "member") -> str:
        return mint_token(
            self.settings, user_id=str(user_id), tenant_id=str(tenant_id), roles=[Role(role)]
        )

    def headers(self, user: str, tenant_id: uuid.UUID) -> Headers:
        token = self.token(self.users[user], tenant_id, self.roles[user])
        return {"Authorization": f"Bearer {token}"}


@dataclass
class Scene:
    """Acme: Olivia owns a ready file; Bob and Carol are members, Dave too, Vic a viewer,
    Ada the tenant admin; the group "team" holds Carol and Dave. Globex: Eve and her own
    file and group."""

    world: World
    acme: uuid.UUID
    globex: uuid.UUID
    file: SharedFile
    scanning: SharedFile
    other_file: SharedFile
    team: uuid.UUID
    other_group: uuid.UUID

    def user(self, name: str) -> uuid.UUID:
        return self.world.users[name]

    def email(self, name: str) -> str:
        return f"{name}@example.test"

    def headers(self, name: str) -> Headers:
        """A token for the user in their tenant, with their role."""
        tenant = self.globex if name == "eve" else self.acme
        return self.world.headers(name, tenant)


@pytest.fixture
async def scene(settings: Settings, owner_engine: AsyncEngine) -> Scene:
    world = World(owner_engine, settings)
    acme = await world.tenant("acme")
    globex = await world.tenant("globex")
    olivia = await world.user("olivia", acme)
    await world.user("bob", acme)
    carol = await world.user("carol", acme)
    dave = await world.user("dave", acme)
    await world.user("vic", acme, "viewer")
    await world.user("ada", acme, "tenant-admin")
    eve = await world.user("eve", globex)
    return Scene(
        world=world,
        acme=acme,
        globex=globex,
        file=await world.file(acme, olivia, "Q3 report.pdf"),
        scanning=await world.file(acme, olivia, "fresh.pdf", status="scanning"),
        other_file=await world.file(globex, eve, "globex.pdf"),
        team=await world.group(acme, "team", [carol, dave]),
        other_group=await world.group(globex, "globex-team", [eve]),
    )


async def share(
    api: Api, scene: Scene, body: dict[str, Any], *, by: str = "olivia", **headers: str
) -> dict[str, Any]:
    """Share the scene's file and wait for the operation to end (200 with Prefer: wait)."""
    response = await api.post(
        f"/v1/files/{scene.file.id}/shares",
        json=body,
        headers={**scene.headers(by), "Prefer": "wait=30", **headers},
    )
    assert response.status == 200, await response.text()
    operation: dict[str, Any] = await response.json()
    return operation
