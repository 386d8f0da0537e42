"""Kill the worker with SIGKILL in the middle of provisioning; a new worker finishes the job.

The admin-user step is held mid-flight by a table lock, so the kill lands while the worker
is inside ``create_admin_user_activity`` with a transaction open, after the record, the
database setup and the storage are done. Temporal times the attempt out and retries it on
the restarted worker; keyed writes make the retry safe, so no row exists twice.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adx_cli.devstack.net import free_port, is_http_ready
from adx_core.contracts.permissions import DEFAULT_ROLE_PERMISSIONS
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import BODY, auth, wait_for_status
from tests.support.processes import start_worker

Client = TestClient[web.Request, web.Application]


async def tenant_count(owner_engine: AsyncEngine, slug: str) -> int:
    async with owner_engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM tenants WHERE slug = :s"), {"s": slug})
    return int(count or 0)


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_sigkilled_worker_loses_nothing(
    api: Client, token: TokenFactory, settings: Settings, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    first_port, second_port = free_port(), free_port()
    worker = start_worker(settings, "tenants", first_port, tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        await wait_until(
            lambda: asyncio.to_thread(is_http_ready, f"http://127.0.0.1:{first_port}/readyz"),
            30,
            "the first worker",
        )
        async with owner_engine.connect() as blocker:
            transaction = await blocker.begin()
            # Blocks writes to memberships, not reads: the steps before it still run.
            await blocker.execute(text("LOCK TABLE memberships IN EXCLUSIVE MODE"))
            response = await api.post("/v1/tenants", json=BODY, headers=auth(token()))
            assert response.status == 202
            location = response.headers["Location"]

            async with owner_engine.connect() as probe:

                async def insert_is_waiting() -> bool:
                    # Only the admin step's insert can wait on a lock as the app role: the
                    # other steps read memberships at most, which this lock allows. (The
                    # query text is not reliable here: a statement waiting in Parse shows
                    # the previous one.)
                    waiting = await probe.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE usename = 'adx_app' AND wait_event_type = 'Lock'"
                        )
                    )
                    return bool(waiting)

                await wait_until(insert_is_waiting, 30, "the activity to block on the lock")

            worker.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(worker.wait, 10) == -signal.SIGKILL
            await transaction.rollback()

        second = start_worker(settings, "tenants", second_port, tmp_path / "worker-2.log")
        final = await wait_for_status(api, token(), location, within=90)
        assert final["status"] == "succeeded", final
        tenant_id = final["result"]["tenant_id"]

        counts = {}
        async with owner_engine.connect() as conn:
            for name, query in {
                "tenants": "SELECT count(*) FROM tenants WHERE id = CAST(:id AS uuid)",
                "quotas": "SELECT count(*) FROM tenant_quotas WHERE tenant_id = CAST(:id AS uuid)",
                "permissions": "SELECT count(*) FROM tenant_role_permissions "
                "WHERE tenant_id = CAST(:id AS uuid)",
                "members": "SELECT count(*) FROM memberships WHERE tenant_id = CAST(:id AS uuid)",
                "users": "SELECT count(*) FROM users WHERE email = 'ada@acme.test'",
                "audit": "SELECT count(*) FROM audit_log WHERE tenant_id = CAST(:id AS uuid)",
            }.items():
                counts[name] = await conn.scalar(text(query), {"id": tenant_id})
        expected_permissions = sum(len(p) for p in DEFAULT_ROLE_PERMISSIONS.values())
        # The retried attempts applied nothing twice: created, membership, activated.
        assert counts == {
            "tenants": 1,
            "quotas": 1,
            "permissions": expected_permissions,
            "members": 1,
            "users": 1,
            "audit": 3,
        }
        assert final["result"]["status"] == "active"
        assert (settings.storage_root / final["result"]["storage_prefix"]).is_dir()
    finally:
        for process in (worker, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
