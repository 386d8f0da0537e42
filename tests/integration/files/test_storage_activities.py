"""The idempotent storage activities, run as Temporal runs them (ActivityEnvironment)
against real providers: each may be retried after any crash and still do its work once."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from adx_core.contracts.storage import (
    CopyObjectRequest,
    ObjectLocation,
    StoreContentRequest,
)
from adx_core.storage import StorageRegistry, tenant_prefix
from adx_workers.files.storage_activities import StorageActivities

TENANT = str(uuid.uuid4())
PREFIX = tenant_prefix(TENANT)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_copy_verifies_and_a_repeat_copies_nothing(stores: StorageRegistry) -> None:
    data = b"invoice " * 10_000
    await stores.get("local").put(PREFIX + "a.pdf", chunks(data), content_type="application/pdf")
    activities = StorageActivities(stores)
    request = CopyObjectRequest(
        source=ObjectLocation("local", PREFIX + "a.pdf"),
        target=ObjectLocation("azure", PREFIX + "a.pdf"),
        expected_sha256=hashlib.sha256(data).hexdigest(),
    )
    env = ActivityEnvironment()
    first = await env.run(activities.copy_object, request)
    assert first.copied
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert (await stores.get("azure").stat(PREFIX + "a.pdf")).content_type == "application/pdf"
    again = await env.run(activities.copy_object, request)  # a retry after a lost answer
    assert not again.copied
    assert again.sha256 == first.sha256


async def test_copy_refuses_a_source_that_changed(stores: StorageRegistry) -> None:
    await stores.get("local").put(PREFIX + "b", chunks(b"now"))
    request = CopyObjectRequest(
        source=ObjectLocation("local", PREFIX + "b"),
        target=ObjectLocation("s3", PREFIX + "b"),
        expected_sha256=hashlib.sha256(b"before").hexdigest(),
    )
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(StorageActivities(stores).copy_object, request)
    assert failure.value.non_retryable
    assert not await stores.get("s3").exists(PREFIX + "b")


@pytest.mark.parametrize(
    ("source", "error_type", "retryable"),
    [
        (ObjectLocation("local", PREFIX + "missing"), "ObjectNotFound", False),
        (ObjectLocation("local", "../escape"), "UnsafeKey", False),
        (ObjectLocation("ftp", PREFIX + "x"), "InvalidMigration", False),
    ],
)
async def test_copy_failures_are_classified(
    stores: StorageRegistry, source: ObjectLocation, error_type: str, retryable: bool
) -> None:
    request = CopyObjectRequest(source=source, target=ObjectLocation("s3", PREFIX + "x"))
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(StorageActivities(stores).copy_object, request)
    assert failure.value.type == error_type
    assert failure.value.non_retryable is not retryable


async def test_delete_of_a_missing_object_succeeds(stores: StorageRegistry) -> None:
    await stores.get("gcs").put(PREFIX + "c", chunks(b"c"))
    activities = StorageActivities(stores)
    env = ActivityEnvironment()
    location = ObjectLocation("gcs", PREFIX + "c")
    assert (await env.run(activities.delete_object, location)).deleted
    assert not (await env.run(activities.delete_object, location)).deleted


async def test_checksum_reads_the_bytes(stores: StorageRegistry) -> None:
    await stores.get("s3").put(PREFIX + "d", chunks(b"checksum me"))
    result = await ActivityEnvironment().run(
        StorageActivities(stores).checksum_object, ObjectLocation("s3", PREFIX + "d")
    )
    assert result.sha256 == hashlib.sha256(b"checksum me").hexdigest()
    assert result.size == 11


async def test_content_stored_under_its_hash_is_written_once(stores: StorageRegistry) -> None:
    data = b"the same photo, uploaded twice"
    sha256 = hashlib.sha256(data).hexdigest()
    await stores.get("local").put(PREFIX + "staging/1", chunks(data))
    await stores.get("local").put(PREFIX + "staging/2", chunks(data))
    activities = StorageActivities(stores)
    env = ActivityEnvironment()
    first = await env.run(
        activities.store_content,
        StoreContentRequest(TENANT, ObjectLocation("local", PREFIX + "staging/1"), sha256, "s3"),
    )
    second = await env.run(
        activities.store_content,
        StoreContentRequest(TENANT, ObjectLocation("local", PREFIX + "staging/2"), sha256, "s3"),
    )
    assert first.stored
    assert not second.stored
    assert first.location == second.location == ObjectLocation("s3", f"{PREFIX}content/{sha256}")
    assert await stores.get("s3").checksum(first.location.key) == sha256


@pytest.mark.parametrize("sha256", ["", "0" * 63, "g" * 64, "../" + "0" * 61])
async def test_store_content_refuses_a_bad_hash(stores: StorageRegistry, sha256: str) -> None:
    request = StoreContentRequest(TENANT, ObjectLocation("local", PREFIX + "x"), sha256, "s3")
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(StorageActivities(stores).store_content, request)
    assert failure.value.non_retryable


async def test_store_content_refuses_a_lie_about_the_hash(stores: StorageRegistry) -> None:
    await stores.get("local").put(PREFIX + "staging/3", chunks(b"actual bytes"))
    request = StoreContentRequest(
        TENANT,
        ObjectLocation("local", PREFIX + "staging/3"),
        hashlib.sha256(b"claimed bytes").hexdigest(),
        "s3",
    )
    with pytest.raises(ApplicationError, match="does not hash"):
        await ActivityEnvironment().run(StorageActivities(stores).store_content, request)


async def test_store_content_refuses_a_bad_tenant(stores: StorageRegistry) -> None:
    sha256 = hashlib.sha256(b"x").hexdigest()
    request = StoreContentRequest("../acme", ObjectLocation("local", PREFIX + "x"), sha256, "s3")
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(StorageActivities(stores).store_content, request)
    assert failure.value.type == "UnsafeKey"
    assert failure.value.non_retryable
