"""Activities of file_migration_workflow.

The ``storage_migration_items`` table is the migration's memory: a row is written as
``copying`` before an object's bytes move and turned ``verified`` once the target's bytes
hash the same as the source's. A retried batch (a worker killed mid-batch) skips verified
rows, and re-checks ``copying`` rows against the target before copying anything again, so
no object is copied twice and none is lost. Rollback reads the same rows: it removes only
what this migration wrote, and restores the records it switched.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.contracts.storage import (
    COPY_BATCH_ACTIVITY,
    DELETE_COPIES_ACTIVITY,
    DELETE_SOURCE_ACTIVITY,
    FINISH_MIGRATION_ACTIVITY,
    INVALID_MIGRATION,
    INVENTORY_ACTIVITY,
    LIST_MIGRATION_PAGE_ACTIVITY,
    MAX_BATCH_SIZE,
    PROBE_TARGET_ACTIVITY,
    RESTORE_RECORDS_ACTIVITY,
    START_MIGRATION_ACTIVITY,
    SWITCH_RECORDS_ACTIVITY,
    BatchResult,
    CopyBatch,
    DeleteCopies,
    DeletedObjects,
    DeleteSource,
    FinishMigration,
    FinishResult,
    Inventory,
    InventoryRequest,
    ListPageRequest,
    MigrationPlan,
    MigrationStatus,
    ObjectPage,
    ObjectRef,
    RecordsResult,
    RestoreRecords,
    StartMigration,
    SwitchRecords,
    TargetProbe,
)
from adx_core.contracts.tenants import TenantStatus
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import File, StorageMigration, StorageMigrationItem, Tenant
from adx_core.logging import get_logger
from adx_core.settings import StorageKind
from adx_core.storage import (
    StorageError,
    StorageProvider,
    UnsafeKeyError,
    tenant_prefix,
    tenant_subprefix,
)
from adx_core.storage.provider import is_marker
from adx_core.storage.registry import StorageRegistry
from adx_workers.files.batch import BatchCopier
from adx_workers.files.storage_activities import provider_of
from adx_workers.files.transfer import (
    SideError,
    as_application_error,
)

log = get_logger(__name__)

# Rows a rollback or a source deletion handles per transaction.
_CHUNK = 500


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=INVALID_MIGRATION, non_retryable=True)


def _storage_failure(side: str, exc: StorageError) -> ApplicationError:
    return as_application_error(SideError(side, exc))


class MigrationActivities:
    def __init__(self, sessions: Sessions, stores: StorageRegistry) -> None:
        self._sessions = sessions
        self._stores = stores

    def _provider(self, name: str) -> StorageProvider:
        return provider_of(self._stores, name)

    @activity.defn(name=START_MIGRATION_ACTIVITY)
    async def start_migration(self, request: StartMigration) -> MigrationPlan:
        """Check the request against the tenant and the configured providers, and record the
        migration (once: a retry finds its row)."""
        try:
            tenant_uuid = uuid.UUID(request.tenant_id)
            prefix = tenant_subprefix(request.tenant_id, request.prefix)
        except (ValueError, UnsafeKeyError) as exc:
            raise _invalid(f"bad tenant or prefix: {exc}") from None
        async with tenant_session(self._sessions, request.tenant_id) as session:
            tenant = await session.get(Tenant, tenant_uuid)
            if tenant is None or tenant.status != TenantStatus.ACTIVE.value:
                raise _invalid("the tenant does not exist or is not active")
            source = request.source or tenant.storage_provider
            kinds = [source, *request.targets]
            known = {kind.value for kind in StorageKind}
            for name in kinds:
                if name not in known:
                    raise _invalid(f"unknown storage provider {name!r}")
            configured = {kind.value for kind in self._stores.configured}
            missing = [name for name in kinds if name not in configured]
            if missing:
                raise _invalid(f"storage provider not configured here: {', '.join(missing)}")
            if len(set(kinds)) != len(kinds):
                raise _invalid("the source and every target must be different providers")
            await session.execute(
                insert(StorageMigration)
                .values(
                    id=uuid.UUID(request.migration_id),
                    tenant_id=tenant_uuid,
                    source=source,
                    targets=list(request.targets),
                    prefix=prefix,
                    delete_source=request.delete_source,
                    status=MigrationStatus.RUNNING.value,
                    requested_by=uuid.UUID(request.requested_by) if request.requested_by else None,
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )
        return MigrationPlan(
            source=source, prefix=prefix, whole_tenant=prefix == tenant_prefix(request.tenant_id)
        )

    @activity.defn(name=INVENTORY_ACTIVITY)
    async def inventory(self, request: InventoryRequest) -> Inventory:
        """Count the files and bytes to move, page by page; a retry resumes from the last
        page it reported."""
        store = self._provider(request.provider)
        token: str | None = None
        files = size = 0
        details = activity.info().heartbeat_details
        if details:
            token, files, size = details[0], int(details[1]), int(details[2])
        while True:
            try:
                page = await store.list(request.prefix, page_token=token)
            except StorageError as exc:
                raise _storage_failure("source", exc) from None
            for info in page.objects:
                if not is_marker(info.key):
                    files += 1
                    size += info.size
            if page.next_token is None:
                return Inventory(files=files, bytes=size)
            token = page.next_token
            activity.heartbeat(token, files, size)

    @activity.defn(name=LIST_MIGRATION_PAGE_ACTIVITY)
    async def list_page(self, request: ListPageRequest) -> ObjectPage:
        if not 1 <= request.page_size <= MAX_BATCH_SIZE:
            raise _invalid(f"batch size must be between 1 and {MAX_BATCH_SIZE}")
        store = self._provider(request.provider)
        try:
            page = await store.list(
                request.prefix, page_token=request.page_token, page_size=request.page_size
            )
        except StorageError as exc:
            raise _storage_failure("source", exc) from None
        objects = [ObjectRef(i.key, i.size) for i in page.objects if not is_marker(i.key)]
        return ObjectPage(objects=objects, next_token=page.next_token)

    @activity.defn(name=PROBE_TARGET_ACTIVITY)
    async def probe_target(self, request: InventoryRequest) -> TargetProbe:
        """Whether the target holds anything under the prefix (its marker aside)."""
        store = self._provider(request.provider)
        try:
            page = await store.list(request.prefix, page_size=2)
        except StorageError as exc:
            raise _storage_failure("target", exc) from None
        return TargetProbe(empty=all(is_marker(info.key) for info in page.objects))

    @activity.defn(name=COPY_BATCH_ACTIVITY)
    async def copy_batch(self, batch: CopyBatch) -> BatchResult:
        """Copy a batch with bounded parallelism (see ``adx_workers.files.batch``)."""
        for ref in batch.objects:
            if not ref.key.startswith(tenant_prefix(batch.tenant_id)):
                raise _invalid(f"{ref.key!r} is outside the tenant's prefix")
        copier = BatchCopier(
            self._sessions, batch, self._provider(batch.source), self._provider(batch.target)
        )
        try:
            return await copier.run()
        except SideError as exc:
            raise as_application_error(exc) from None

    @activity.defn(name=SWITCH_RECORDS_ACTIVITY)
    async def switch_records(self, request: SwitchRecords) -> RecordsResult:
        """Point the file records of verified copies at the target. Only keys whose copy is
        verified are switched, whatever the caller passed."""
        verified = select(StorageMigrationItem.key).where(
            StorageMigrationItem.migration_id == uuid.UUID(request.migration_id),
            StorageMigrationItem.target == request.target,
            StorageMigrationItem.state == "verified",
            StorageMigrationItem.key.in_(request.keys),
        )
        async with tenant_session(self._sessions, request.tenant_id) as session:
            result = await session.execute(
                update(File)
                .where(
                    File.tenant_id == uuid.UUID(request.tenant_id),
                    File.storage_provider.in_(request.from_providers),
                    File.storage_key.in_(verified),
                )
                .values(storage_provider=request.target)
            )
        return RecordsResult(records=result.rowcount)  # type: ignore[attr-defined]

    @activity.defn(name=RESTORE_RECORDS_ACTIVITY)
    async def restore_records(self, request: RestoreRecords) -> RecordsResult:
        """Point every record this migration switched back at the source."""
        moved = select(StorageMigrationItem.key).where(
            StorageMigrationItem.migration_id == uuid.UUID(request.migration_id)
        )
        async with tenant_session(self._sessions, request.tenant_id) as session:
            result = await session.execute(
                update(File)
                .where(
                    File.tenant_id == uuid.UUID(request.tenant_id),
                    File.storage_provider.in_(request.targets),
                    File.storage_key.in_(moved),
                )
                .values(storage_provider=request.source)
            )
        return RecordsResult(records=result.rowcount)  # type: ignore[attr-defined]

    @activity.defn(name=DELETE_COPIES_ACTIVITY)
    async def delete_copies(self, request: DeleteCopies) -> DeletedObjects:
        """Remove from the target what this migration wrote there, and forget the rows.
        Bytes that were on the target before the migration stay."""
        target = self._provider(request.target)
        migration = uuid.UUID(request.migration_id)
        details = activity.info().heartbeat_details
        deleted = int(details[0]) if details else 0
        while True:
            async with tenant_session(self._sessions, request.tenant_id) as session:
                result = await session.execute(
                    select(StorageMigrationItem.key, StorageMigrationItem.created)
                    .where(
                        StorageMigrationItem.migration_id == migration,
                        StorageMigrationItem.target == request.target,
                    )
                    .order_by(StorageMigrationItem.key)
                    .limit(_CHUNK)
                )
                rows = result.all()
            if not rows:
                return DeletedObjects(deleted=deleted)
            for key, created in rows:
                if created:
                    try:
                        await target.delete(key)
                    except StorageError as exc:
                        raise _storage_failure("target", exc) from None
                    deleted += 1
            async with tenant_session(self._sessions, request.tenant_id) as session:
                await session.execute(
                    delete(StorageMigrationItem).where(
                        StorageMigrationItem.migration_id == migration,
                        StorageMigrationItem.target == request.target,
                        StorageMigrationItem.key.in_([key for key, _ in rows]),
                    )
                )
            activity.heartbeat(deleted)

    @activity.defn(name=DELETE_SOURCE_ACTIVITY)
    async def delete_source(self, request: DeleteSource) -> DeletedObjects:
        """After the commit: remove the source objects whose copies are verified on the
        target, in key order, resuming after the last key a previous attempt reported."""
        source = self._provider(request.source)
        migration = uuid.UUID(request.migration_id)
        after, deleted = "", 0
        details = activity.info().heartbeat_details
        if details:
            after, deleted = str(details[0]), int(details[1])
        while True:
            async with tenant_session(self._sessions, request.tenant_id) as session:
                keys = list(
                    await session.scalars(
                        select(StorageMigrationItem.key)
                        .where(
                            StorageMigrationItem.migration_id == migration,
                            StorageMigrationItem.target == request.target,
                            StorageMigrationItem.state == "verified",
                            StorageMigrationItem.key > after,
                        )
                        .order_by(StorageMigrationItem.key)
                        .limit(_CHUNK)
                    )
                )
            if not keys:
                return DeletedObjects(deleted=deleted)
            for key in keys:
                try:
                    await source.delete(key)
                except StorageError as exc:
                    raise _storage_failure("source", exc) from None
                deleted += 1
            after = keys[-1]
            activity.heartbeat(after, deleted)

    @activity.defn(name=FINISH_MIGRATION_ACTIVITY)
    async def finish_migration(self, request: FinishMigration) -> FinishResult:
        """Record the outcome. A committed whole-tenant migration also moves the tenant:
        its new files go to the target from now on."""
        values: dict[str, Any] = {
            "status": request.status.value,
            "target_used": request.target,
            "failure": request.failure,
            "finished_at": datetime.now(UTC),
        }
        if request.result is not None:
            values["result"] = _result_json(request)
        if request.status is MigrationStatus.COMMITTED and request.whole_tenant and request.target:
            target = self._provider(request.target)
            try:
                await target.ensure_prefix(tenant_prefix(request.tenant_id))
            except StorageError as exc:
                raise _storage_failure("target", exc) from None
        async with tenant_session(self._sessions, request.tenant_id) as session:
            await session.execute(
                update(StorageMigration)
                .where(StorageMigration.id == uuid.UUID(request.migration_id))
                .values(**values)
            )
            if (
                request.status is MigrationStatus.COMMITTED
                and request.whole_tenant
                and request.target
            ):
                await session.execute(
                    update(Tenant)
                    .where(Tenant.id == uuid.UUID(request.tenant_id))
                    .values(storage_provider=request.target)
                )
        log.info("migration finished", status=request.status.value, target=request.target)
        return FinishResult(status=request.status)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.start_migration,
            self.inventory,
            self.list_page,
            self.probe_target,
            self.copy_batch,
            self.switch_records,
            self.restore_records,
            self.delete_copies,
            self.delete_source,
            self.finish_migration,
        ]


def _result_json(request: FinishMigration) -> dict[str, Any]:
    return asdict(request.result) if request.result is not None else {}
