"""What one file costs inside ``copy_migration_batch_activity``, call by call.

The bench process runs the real activity, ``MigrationActivities.copy_batch``, in-process
under ``temporalio.testing.ActivityEnvironment``, on one batch of files with parallelism
1, so that no two calls overlap and each can be timed. Its two providers are wrapped to
count and time every storage call (the outermost one only: the local ``get`` that an S3
``put`` reads from is counted, its time is the put's), and so is every database session
from its opening to its close (the pool's checkout and pre-ping, ``set_config`` for
row-level security, the statements, the commit). Whatever the batch took beyond those is
the activity's own code: hashing, sorting, heartbeats, the event loop.

Nothing here knows how the activity goes about its work, so the figures follow the code.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from temporalio.testing import ActivityEnvironment

from adx_core.contracts.storage import CopyBatch, ObjectRef, StartMigration
from adx_core.db.engine import Sessions, create_engine, create_sessions
from adx_core.settings import Settings, StorageKind
from adx_core.storage import StorageRegistry, open_storage
from adx_core.storage.provider import DEFAULT_CONTENT_TYPE, ListPage, ObjectInfo, StorageProvider
from adx_workers.files.migration_activities import MigrationActivities

T = TypeVar("T")

DB = "PostgreSQL transaction"
LABELS = {
    ("local", "stat"): "local stat",
    ("local", "get"): "local get",
    ("s3", "stat"): "S3 HEAD (stat)",
    ("s3", "put"): "S3 PUT (put, reading the local file)",
    ("s3", "checksum"): "S3 GET + SHA-256 (checksum: the read-back)",
    ("s3", "get"): "S3 GET",
}


@dataclass
class CallCost:
    calls: int = 0
    timed: int = 0  # calls made at the outermost level, whose time is counted here
    wall: float = 0.0
    cpu: float = 0.0


@dataclass
class BatchSteps:
    files: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    calls: dict[str, CallCost] = field(default_factory=dict)

    def per_file_ms(self, seconds: float) -> float:
        return seconds / self.files * 1000 if self.files else float("nan")


class _Clock:
    def __init__(self, steps: BatchSteps) -> None:
        self._steps = steps
        self._depth = 0

    def cost(self, label: str) -> CallCost:
        return self._steps.calls.setdefault(label, CallCost())

    async def time(self, label: str, call: Awaitable[T]) -> T:
        cost = self.cost(label)
        cost.calls += 1
        outermost = self._depth == 0
        self._depth += 1
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return await call
        finally:
            self._depth -= 1
            if outermost:
                cost.timed += 1
                cost.wall += time.perf_counter() - wall
                cost.cpu += time.process_time() - cpu

    async def time_iter(self, label: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        cost = self.cost(label)
        cost.calls += 1
        outermost = self._depth == 0
        self._depth += 1
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            self._depth -= 1
            if outermost:
                cost.timed += 1
                cost.wall += time.perf_counter() - wall
                cost.cpu += time.process_time() - cpu


class _Timed(StorageProvider):
    """A provider whose every call is counted and timed by ``clock``."""

    def __init__(self, inner: StorageProvider, clock: _Clock) -> None:
        self.name = inner.name
        self._inner = inner
        self._clock = clock

    def _label(self, call: str) -> str:
        return LABELS.get((self.name, call), f"{self.name} {call}")

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        return await self._clock.time(
            self._label("put"), self._inner.put(key, chunks, content_type=content_type)
        )

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self._clock.time_iter(
            self._label("get"), self._inner.get(key, offset=offset, length=length)
        )

    async def stat(self, key: str) -> ObjectInfo:
        return await self._clock.time(self._label("stat"), self._inner.stat(key))

    async def copy(self, source_key: str, target_key: str) -> ObjectInfo:
        return await self._clock.time(self._label("copy"), self._inner.copy(source_key, target_key))

    async def delete(self, key: str) -> None:
        await self._clock.time(self._label("delete"), self._inner.delete(key))

    async def list(
        self, prefix: str, *, page_token: str | None = None, page_size: int = 1000
    ) -> ListPage:
        return await self._clock.time(
            self._label("list"),
            self._inner.list(prefix, page_token=page_token, page_size=page_size),
        )

    async def checksum(self, key: str) -> str:
        return await self._clock.time(self._label("checksum"), self._inner.checksum(key))

    async def close(self) -> None:
        await self._inner.close()


class _TimedSessions:
    """The sessionmaker, each session timed from its creation to its close: the pool's
    checkout and pre-ping, ``set_config`` for row-level security, the statements and the
    commit (``tenant_session`` makes one transaction per session)."""

    def __init__(self, sessions: Any, clock: _Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def __call__(self) -> _TimedSession:
        return _TimedSession(self._sessions(), self._clock)


class _TimedSession:
    def __init__(self, session: Any, clock: _Clock) -> None:
        self._session = session
        self._clock = clock
        self._began = (0.0, 0.0)

    async def __aenter__(self) -> Any:
        self._began = (time.perf_counter(), time.process_time())
        return await self._session.__aenter__()

    async def __aexit__(self, *exc: object) -> Any:
        try:
            return await self._session.__aexit__(*exc)
        finally:
            cost = self._clock.cost(DB)
            cost.calls += 1
            cost.timed += 1
            cost.wall += time.perf_counter() - self._began[0]
            cost.cpu += time.process_time() - self._began[1]


async def measure(settings: Settings, tenant_id: str, keys: list[str], size: int) -> BatchSteps:
    """Copy ``keys`` (files of ``size`` bytes on local) to S3 as one batch, in-process."""
    steps = BatchSteps(files=len(keys))
    clock = _Clock(steps)
    engine = create_engine(settings)
    local = _Timed(open_storage(settings, StorageKind.LOCAL), clock)
    s3 = _Timed(open_storage(settings, StorageKind.S3), clock)
    stores = StorageRegistry(settings, {StorageKind.LOCAL: local, StorageKind.S3: s3})
    try:
        # Duck-typed: the activities only call the factory and use the session it makes.
        timed = cast(Sessions, _TimedSessions(create_sessions(engine), clock))
        activities = MigrationActivities(timed, stores)
        migration_id = str(uuid.uuid4())
        await activities.start_migration(
            StartMigration(
                migration_id=migration_id,
                tenant_id=tenant_id,
                source="local",
                targets=["s3"],
                prefix="",
                delete_source=False,
                requested_by=None,
            )
        )
        batch = CopyBatch(
            migration_id=migration_id,
            tenant_id=tenant_id,
            source="local",
            target="s3",
            objects=[ObjectRef(key, size) for key in keys],
            parallelism=1,
        )
        if "check_target" in {f.name for f in dataclasses.fields(CopyBatch)}:
            # What the workflow passes when its probe found the target empty under the
            # prefix, as it is for a tenant never migrated before.
            batch = dataclasses.replace(batch, check_target=False)
        steps.calls.clear()  # the start's transaction is not the batch's
        cpu, wall = time.process_time(), time.perf_counter()
        result = await ActivityEnvironment().run(activities.copy_batch, batch)
        steps.wall = time.perf_counter() - wall
        steps.cpu = time.process_time() - cpu
        copied = sum(1 for o in result.objects if o.copied)
        if copied != len(keys):
            raise RuntimeError(f"the batch copied {copied} of {len(keys)} files")
    finally:
        await stores.close()
        await engine.dispose()
    return steps
