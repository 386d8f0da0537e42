"""Idempotent storage activities any workflow can call.

Each can be retried after a crash at any point: a copy that finds the same bytes already on
the target does nothing, a delete of a missing object succeeds, and content stored under
its own hash is written once. Retries come from the caller's retry policy only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.contracts.storage import (
    CHECKSUM_OBJECT_ACTIVITY,
    COPY_OBJECT_ACTIVITY,
    DELETE_OBJECT_ACTIVITY,
    INVALID_MIGRATION,
    STORE_CONTENT_ACTIVITY,
    UNSAFE_KEY,
    ChecksumResult,
    CopyObjectRequest,
    CopyObjectResult,
    DeleteObjectResult,
    ObjectLocation,
    StoreContentRequest,
    StoreContentResult,
)
from adx_core.logging import get_logger
from adx_core.storage import StorageError, StorageNotConfiguredError, StorageProvider, tenant_key
from adx_core.storage.registry import StorageRegistry
from adx_workers.files.transfer import (
    SideError,
    as_application_error,
    source_object,
    target_matches,
    transfer,
)

log = get_logger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def provider_of(stores: StorageRegistry, name: str) -> StorageProvider:
    try:
        return stores.get(name)
    except StorageNotConfiguredError as exc:
        raise ApplicationError(str(exc), type=INVALID_MIGRATION, non_retryable=True) from None


class StorageActivities:
    def __init__(self, stores: StorageRegistry) -> None:
        self._stores = stores

    @activity.defn(name=COPY_OBJECT_ACTIVITY)
    async def copy_object(self, request: CopyObjectRequest) -> CopyObjectResult:
        source = provider_of(self._stores, request.source.provider)
        target = provider_of(self._stores, request.target.provider)
        try:
            described = await source_object(source, request.source.key)
            size, sha256 = described.size, described.sha256
            if request.expected_sha256 not in (None, sha256):
                # The source changed since it was recorded; copying it would spread that.
                raise ApplicationError(
                    f"source {request.source.key!r} no longer matches its recorded checksum",
                    type="ChecksumMismatch",
                    non_retryable=True,
                )
            if await target_matches(target, request.target.key, size, sha256):
                return CopyObjectResult(size=size, sha256=sha256, copied=False)
            done = await transfer(source, request.source.key, target, request.target.key, described)
        except SideError as exc:
            raise as_application_error(exc) from None
        return CopyObjectResult(size=done.size, sha256=done.sha256, copied=True)

    @activity.defn(name=DELETE_OBJECT_ACTIVITY)
    async def delete_object(self, location: ObjectLocation) -> DeleteObjectResult:
        store = provider_of(self._stores, location.provider)
        try:
            existed = await store.exists(location.key)
            await store.delete(location.key)
        except StorageError as exc:
            raise as_application_error(SideError("target", exc)) from None
        return DeleteObjectResult(deleted=existed)

    @activity.defn(name=CHECKSUM_OBJECT_ACTIVITY)
    async def checksum_object(self, location: ObjectLocation) -> ChecksumResult:
        store = provider_of(self._stores, location.provider)
        try:
            info = await store.stat(location.key)
            return ChecksumResult(sha256=await store.checksum(location.key), size=info.size)
        except StorageError as exc:
            raise as_application_error(SideError("source", exc)) from None

    @activity.defn(name=STORE_CONTENT_ACTIVITY)
    async def store_content(self, request: StoreContentRequest) -> StoreContentResult:
        """Put an uploaded object under ``content/<sha256>``: a no-op when that content is
        already stored, so a retried or repeated upload writes it once."""
        if not _SHA256.match(request.sha256):
            raise ApplicationError("sha256 must be 64 hex digits", non_retryable=True)
        try:
            key = tenant_key(request.tenant_id, f"content/{request.sha256}")
        except ValueError as exc:  # not a tenant id
            raise ApplicationError(str(exc), type=UNSAFE_KEY, non_retryable=True) from None
        target_location = ObjectLocation(request.provider, key)
        source = provider_of(self._stores, request.staged.provider)
        target = provider_of(self._stores, request.provider)
        try:
            described = await source_object(source, request.staged.key)
            size, sha256 = described.size, described.sha256
            if sha256 != request.sha256:
                raise ApplicationError(
                    "the staged object does not hash to the given sha256",
                    type="ChecksumMismatch",
                    non_retryable=True,
                )
            if await target_matches(target, target_location.key, size, sha256):
                return StoreContentResult(location=target_location, size=size, stored=False)
            await transfer(source, request.staged.key, target, target_location.key, described)
        except SideError as exc:
            raise as_application_error(exc) from None
        log.info("content stored", provider=request.provider, size=size)
        return StoreContentResult(location=target_location, size=size, stored=True)

    def all(self) -> list[Callable[..., Any]]:
        return [self.copy_object, self.delete_object, self.checksum_object, self.store_content]
