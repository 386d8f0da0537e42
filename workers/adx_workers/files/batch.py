"""One batch of a migration: copy its objects, verified, with bounded parallelism.

The ``storage_migration_items`` rows are the migration's memory, written in bulk so that a
batch costs two statements, not two per object:

1. every object is described (size, SHA-256, type) and sorted out: already ``verified``
   by an earlier attempt, already on the target, or to be copied;
2. one statement writes a ``copying`` row for each object about to be copied, and a
   ``verified`` row for each the target already held;
3. the copies run, ``parallelism`` at a time; every ``FLUSH_EVERY`` verified copies (and
   at the end) one statement turns their rows ``verified`` and the activity heartbeats
   the objects whose rows are written.

A crash anywhere leaves rows that say what is known: ``verified`` rows are skipped by the
retry, ``copying`` rows are checked against the target (its bytes read back and hashed)
before anything is copied again. So no object is copied twice and none is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from adx_core.contracts.storage import BatchResult, CopiedObject, CopyBatch, ObjectRef
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import StorageMigrationItem
from adx_core.storage import ObjectNotFoundError, StorageProvider
from adx_workers.files.transfer import (
    SideError,
    SourceObject,
    source_object,
    target_matches,
    transfer,
)

FLUSH_EVERY = 25


@dataclass
class _Sorted:
    to_copy: list[tuple[ObjectRef, SourceObject]] = field(default_factory=list)
    # Already on the target: (object, whether this migration wrote it in an earlier attempt)
    present: list[tuple[CopiedObject, bool]] = field(default_factory=list)
    vanished: int = 0


class BatchCopier:
    def __init__(
        self,
        sessions: Sessions,
        batch: CopyBatch,
        source: StorageProvider,
        target: StorageProvider,
    ) -> None:
        self._sessions = sessions
        self._batch = batch
        self._migration = uuid.UUID(batch.migration_id)
        self._source = source
        self._target = target
        self._gate = asyncio.Semaphore(max(1, batch.parallelism))
        self._done: dict[str, CopiedObject] = {}
        self._unflushed: list[CopiedObject] = []
        self._flush_lock = asyncio.Lock()

    async def run(self) -> BatchResult:
        details = activity.info().heartbeat_details
        if details:
            for key, size, sha256, copied in details[0]:
                self._done[key] = CopiedObject(key, int(size), sha256, bool(copied))
        todo = [ref for ref in self._batch.objects if ref.key not in self._done]
        rows = await self._states([ref.key for ref in todo])
        sorted_ = await self._sort(todo, rows)
        await self._write_rows(sorted_)
        for copied, _ in sorted_.present:
            self._done[copied.key] = copied
        self._heartbeat()
        await self._gather([self._copy(ref, described) for ref, described in sorted_.to_copy])
        await self._flush()
        ordered = [self._done[ref.key] for ref in self._batch.objects if ref.key in self._done]
        return BatchResult(objects=ordered, vanished=sorted_.vanished)

    @staticmethod
    async def _gather(steps: list[Coroutine[Any, Any, None]]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for step in steps:
                    group.create_task(step)
        except BaseExceptionGroup as group_error:
            # The first failure decides; the TaskGroup has cancelled the other steps.
            raise group_error.exceptions[0] from None

    async def _states(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        async with tenant_session(self._sessions, self._batch.tenant_id) as session:
            result = await session.execute(
                select(StorageMigrationItem.key, StorageMigrationItem.state).where(
                    StorageMigrationItem.migration_id == self._migration,
                    StorageMigrationItem.target == self._batch.target,
                    StorageMigrationItem.key.in_(keys),
                )
            )
            return {key: state for key, state in result.all()}

    async def _sort(self, todo: list[ObjectRef], rows: dict[str, str]) -> _Sorted:
        sorted_ = _Sorted()

        async def one(ref: ObjectRef) -> None:
            async with self._gate:
                try:
                    described = await source_object(self._source, ref.key)
                except SideError as exc:
                    if isinstance(exc.error, ObjectNotFoundError):
                        sorted_.vanished += 1  # deleted since it was listed
                        return
                    raise
                state = rows.get(ref.key)
                present = CopiedObject(ref.key, described.size, described.sha256, copied=False)
                if state == "verified":
                    self._done[ref.key] = present
                elif (state is not None or self._batch.check_target) and await target_matches(
                    self._target, ref.key, described.size, described.sha256
                ):
                    # Written by an attempt that died before recording it ('copying'), or
                    # bytes that were there before this migration (no row): keep them.
                    sorted_.present.append((present, state is not None))
                else:
                    sorted_.to_copy.append((ref, described))

        await self._gather([one(ref) for ref in todo])
        return sorted_

    async def _write_rows(self, sorted_: _Sorted) -> None:
        values = [
            self._row(ref.key, described.size, described.sha256, created=True, state="copying")
            for ref, described in sorted_.to_copy
        ] + [
            self._row(o.key, o.size, o.sha256, created=ours, state="verified")
            for o, ours in sorted_.present
        ]
        if not values:
            return
        statement = insert(StorageMigrationItem).values(values)
        async with tenant_session(self._sessions, self._batch.tenant_id) as session:
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["migration_id", "target", "key"],
                    set_={
                        "size_bytes": statement.excluded.size_bytes,
                        "sha256": statement.excluded.sha256,
                        "state": statement.excluded.state,
                    },
                )
            )

    def _row(
        self, key: str, size: int, sha256: str | None, *, created: bool, state: str
    ) -> dict[str, object]:
        return {
            "migration_id": self._migration,
            "target": self._batch.target,
            "key": key,
            "tenant_id": uuid.UUID(self._batch.tenant_id),
            "size_bytes": size,
            "sha256": sha256,
            "created": created,
            "state": state,
        }

    async def _copy(self, ref: ObjectRef, described: SourceObject) -> None:
        async with self._gate:
            try:
                done = await transfer(self._source, ref.key, self._target, ref.key, described)
            except SideError as exc:
                if exc.side == "source" and isinstance(exc.error, ObjectNotFoundError):
                    return  # deleted meanwhile; its 'copying' row is undone by a rollback
                raise
        self._unflushed.append(CopiedObject(ref.key, done.size, done.sha256, copied=True))
        if len(self._unflushed) >= FLUSH_EVERY:
            await self._flush()

    async def _flush(self) -> None:
        """Turn the rows of the copies verified so far 'verified', then heartbeat them."""
        async with self._flush_lock:
            batch, self._unflushed = self._unflushed, []
            if not batch:
                return
            # The copy hashed to the SHA-256 its 'copying' row already holds.
            async with tenant_session(self._sessions, self._batch.tenant_id) as session:
                await session.execute(
                    update(StorageMigrationItem)
                    .where(
                        StorageMigrationItem.migration_id == self._migration,
                        StorageMigrationItem.target == self._batch.target,
                        StorageMigrationItem.key.in_([copied.key for copied in batch]),
                    )
                    .values(state="verified")
                )
            for copied in batch:
                self._done[copied.key] = copied
            self._heartbeat()

    def _heartbeat(self) -> None:
        activity.heartbeat([[o.key, o.size, o.sha256, o.copied] for o in self._done.values()])
