"""Shared pieces of the operations API tests: a slow provisioning step to hold an
operation open, and a way to start tenants."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from temporalio import activity

from adx_core.contracts.tenants import ACTIVATE_TENANT_ACTIVITY, ActivateTenantInput
from adx_core.contracts.tenants import ActivateTenantResult as Activated
from adx_workers.resources import WorkerResources
from adx_workers.tenants.activities import TenantActivities
from tests.integration.test_tenant_slice import BODY, auth

Client = TestClient[web.Request, web.Application]


def tenant_body(slug: str | None = None) -> dict[str, Any]:
    slug = slug or f"t{uuid.uuid4().hex[:10]}"
    return {**BODY, "slug": slug, "admin": {"email": f"ada@{slug}.test", "name": "Ada"}}


async def start_tenant(api: Client, bearer: str, **headers: str) -> dict[str, Any]:
    response = await api.post(
        "/v1/tenants", json=tenant_body(), headers={**auth(bearer), **headers}
    )
    assert response.status in (200, 202), await response.text()
    operation: dict[str, Any] = await response.json()
    return operation


def slow_activation(resources: WorkerResources, seconds: float) -> Callable[..., Any]:
    """The last provisioning step, made slow: it heartbeats, so a cancel reaches it."""
    real = TenantActivities(resources.sessions, resources.storage)

    @activity.defn(name=ACTIVATE_TENANT_ACTIVITY)
    async def activate(request: ActivateTenantInput) -> Activated:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            activity.heartbeat()
            await asyncio.sleep(0.1)
        return await real.activate_tenant(request)

    return activate
