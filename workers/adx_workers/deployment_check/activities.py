"""The deployment check's activity: each worker checks what its build was deployed with.

A check that fails is reported, not raised, so one run names every problem at once; the
workflow turns a report with failures into its own failure.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import cache

from alembic.script import ScriptDirectory
from sqlalchemy import text
from temporalio import activity

from adx_core.contracts.deployment import (
    CHECK_DEPENDENCIES_ACTIVITY,
    CheckOutcome,
    DeploymentCheckResult,
)
from adx_core.db.migrate import alembic_config
from adx_core.scanning.base import Scanner
from adx_workers.resources import WorkerResources

# Where the storage check writes its probe: outside every tenant's prefix, so no tenant's
# listing, usage or migration ever sees it.
PROBE_PREFIX = "deployment-checks"
PROBE_BODY = b"adx deployment check\n"

Check = Callable[[], Awaitable[str]]


class DeploymentCheckFailedError(Exception):
    pass


@dataclass(frozen=True)
class Migrations:
    """The migrations this build's code ships: the newest, and every one it knows."""

    head: str
    known: frozenset[str]


@cache
def shipped_migrations() -> Migrations:
    scripts = ScriptDirectory.from_config(alembic_config("", ""))
    head = scripts.get_current_head()
    if head is None:
        raise RuntimeError("this build ships no migrations")
    return Migrations(head, frozenset(script.revision for script in scripts.walk_revisions()))


def schema_verdict(revision: str | None, migrations: Migrations) -> str:
    """Whether this build can run on a database at ``revision``. A revision it does not know
    is newer than its code: a later build migrated, and migrations keep the build before them
    working (docs/operations.md#rollback), so an older build still being promoted, or one
    rolled back to, passes."""
    if revision == migrations.head:
        return f"schema at {revision}"
    if revision is None or revision in migrations.known:
        raise DeploymentCheckFailedError(
            f"the schema is at revision {revision}, this build needs {migrations.head}: "
            "run adx migrate first"
        )
    return f"schema at {revision}, newer than this build's {migrations.head}"


async def _one(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


class DeploymentCheckActivities:
    def __init__(
        self,
        resources: WorkerResources,
        service: str,
        scanner: Scanner | None = None,
        *,
        migrations: Migrations | None = None,
    ) -> None:
        self._resources = resources
        self._service = service
        self._scanner = scanner
        self._migrations = migrations

    async def database(self) -> str:
        """The application role connects and the schema has this build's migrations (a
        build that needs a migration nobody ran is refused before it runs a workflow)."""
        async with self._resources.engine.connect() as connection:
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        return schema_verdict(revision, self._migrations or shipped_migrations())

    async def storage(self) -> str:
        """The default provider takes, returns and deletes a small object."""
        store = self._resources.storage
        key = f"{PROBE_PREFIX}/{self._service}/{uuid.uuid4()}"
        step, stored = "write", False
        try:
            await store.put(key, _one(PROBE_BODY), content_type="text/plain")
            step, stored = "read", True
            body = b"".join([chunk async for chunk in store.get(key)])
            step = "delete"
            await store.delete(key)
        except Exception as err:
            if stored and step == "read":
                # Probes must not pile up, one per failed rollout.
                with contextlib.suppress(Exception):
                    await store.delete(key)
            # Which step failed says more than the provider's error alone (a read-only
            # volume fails the write; a missing grant may fail only the delete).
            raise DeploymentCheckFailedError(
                f"{store.name} {step} of {key} failed: {type(err).__name__}: {err}"
            ) from err
        if body != PROBE_BODY:
            raise DeploymentCheckFailedError(f"{store.name} returned other bytes than written")
        return f"{store.name}: write, read and delete"

    async def scanner(self) -> str:
        assert self._scanner is not None
        await self._scanner.ping()
        return f"{type(self._scanner).__name__} answers"

    def checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {"database": self.database, "storage": self.storage}
        if self._scanner is not None:
            checks["scanner"] = self.scanner
        return checks

    @activity.defn(name=CHECK_DEPENDENCIES_ACTIVITY)
    async def check_dependencies(self) -> DeploymentCheckResult:
        outcomes: list[CheckOutcome] = []
        for name, check in self.checks().items():
            started = time.monotonic()
            try:
                detail, ok = await check(), True
            except DeploymentCheckFailedError as err:
                detail, ok = str(err), False
            # Any other failure is a finding to report too, named by its type.
            except Exception as err:
                detail, ok = f"{type(err).__name__}: {err}", False
            elapsed = round((time.monotonic() - started) * 1000)
            outcomes.append(CheckOutcome(name, ok, detail[:500], elapsed))
        return DeploymentCheckResult(
            service=self._service,
            build_id=self._resources.settings.worker_build_id or "",
            checks=outcomes,
        )
