"""The Azure Blob Storage provider (Azurite in development and tests).

Large objects go up as staged blocks committed in one call, which is what makes a write
atomic: until the block list is committed, readers see the old blob. The SHA-256 goes into
the blob's metadata, the content type into its properties; a server-side copy keeps both.

The SDK's own retries are off: a failure surfaces at once, as a ``StorageError``, and the
activity's retry policy decides what happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

import aiohttp
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from adx_core.settings import Settings
from adx_core.storage.errors import (
    InvalidRangeError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)
from adx_core.storage.keys import validate_key, validate_prefix
from adx_core.storage.provider import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PART_SIZE,
    ListPage,
    ObjectInfo,
    StorageProvider,
    check_page_size,
    check_range,
)

_SHA_META = "sha256"


class AzureStorage(StorageProvider):
    name = "azure"

    def __init__(
        self, service: BlobServiceClient, container: str, *, part_size: int = DEFAULT_PART_SIZE
    ) -> None:
        self._service = service
        self._container: ContainerClient = service.get_container_client(container)
        self._container_name = container
        self._part_size = part_size

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureStorage:
        if not settings.azure_container:
            raise StorageError("ADX_AZURE_CONTAINER is not set")
        part = settings.storage_part_size
        options: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": settings.storage_timeout_seconds,
            "read_timeout": settings.storage_timeout_seconds,
            # One request carries at most one part, both ways: the SDK's defaults would
            # upload up to 64 MiB and download up to 32 MiB in a single buffer.
            "max_single_put_size": part,
            "max_block_size": part,
            "max_single_get_size": part,
            "max_chunk_get_size": part,
        }
        try:
            if settings.azure_connection_string is not None:
                service = BlobServiceClient.from_connection_string(
                    settings.azure_connection_string.get_secret_value(), **options
                )
            elif settings.azure_account_url and settings.azure_account_key is not None:
                service = BlobServiceClient(
                    settings.azure_account_url,
                    credential=settings.azure_account_key.get_secret_value(),
                    **options,
                )
            else:
                raise StorageError(
                    "set ADX_AZURE_CONNECTION_STRING,"
                    " or ADX_AZURE_ACCOUNT_URL and ADX_AZURE_ACCOUNT_KEY"
                )
        except (ValueError, TypeError, AzureError):
            # The SDK's message may quote the connection string, key and all.
            raise StorageAuthError(
                "the Azure connection string or account URL and key could not be parsed"
            ) from None
        return cls(service, settings.azure_container, part_size=part)

    def __repr__(self) -> str:
        account, container = self._service.account_name, self._container_name
        return f"AzureStorage(account={account!r}, container={container!r})"

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(validate_key(key))

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (AzureError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._translate(key, exc) from None

    def _translate(self, key: str, exc: BaseException) -> StorageError:
        # Messages are ours: the service's may quote the signed string or a SAS URL.
        if not isinstance(exc, HttpResponseError) or exc.status_code is None:
            return StorageUnavailableError(
                f"Azure Blob Storage could not be reached for {key!r}: {type(exc).__name__}"
            )
        status, code = exc.status_code, _error_code(exc)
        if code == "ContainerNotFound":
            return StorageError(
                f"the Azure container {self._container_name!r} does not exist"
                " (check ADX_AZURE_CONTAINER, or create it)"
            )
        if status in (401, 403):
            return StorageAuthError(
                f"Azure refused the credentials for container {self._container_name!r}"
                f" ({status} {code})"
            )
        if status == 404:
            return ObjectNotFoundError(key)
        if status == 416:
            return InvalidRangeError(f"the range for {key!r} starts past the end")
        if status in (408, 429) or status >= 500:
            return StorageUnavailableError(
                f"Azure Blob Storage is unavailable for {key!r} ({status} {code})"
            )
        return StorageError(f"Azure refused the request for {key!r} ({status} {code})")

    async def ensure_container(self) -> None:
        with self._errors(""), contextlib.suppress(ResourceExistsError):
            await self._container.create_container()

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        blob = self._blob(key)
        digest = hashlib.sha256()
        settings = ContentSettings(content_type=content_type)
        # Block ids are unique per upload, so two writers of one key never mix their blocks.
        upload = uuid.uuid4().hex
        blocks: list[BlobBlock] = []

        async def stage(part: bytes) -> None:
            block_id = f"{upload}-{len(blocks):08d}"
            with self._errors(key):
                await blob.stage_block(block_id, part, length=len(part))
            blocks.append(BlobBlock(block_id=block_id))

        size = 0
        last = b""
        # The caller's chunks are read outside the error mapping: their failures are theirs.
        async for part in _parts(chunks, self._part_size):
            digest.update(part)
            size += len(part)
            if len(part) < self._part_size:
                last = part  # the final part, always the short one
                continue
            await stage(part)
        metadata = {_SHA_META: digest.hexdigest()}
        if blocks and last:
            await stage(last)
        with self._errors(key):
            if blocks:
                await blob.commit_block_list(blocks, metadata=metadata, content_settings=settings)
            else:
                await blob.upload_blob(
                    last,
                    length=len(last),
                    overwrite=True,
                    metadata=metadata,
                    content_settings=settings,
                )
        return ObjectInfo(key=key, size=size, sha256=metadata[_SHA_META], content_type=content_type)

    async def get(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        blob = self._blob(key)
        check_range(offset, length)
        with self._errors(key):
            if length == 0:
                await self._check_offset(blob, key, offset)
                return
            try:
                # Without a range the SDK also reads an empty blob, which refuses any range.
                if offset == 0 and length is None:
                    download = await blob.download_blob()
                else:
                    download = await blob.download_blob(offset, length)
            except HttpResponseError as exc:
                if exc.status_code != 416:
                    raise
                # Azure refuses a range that starts at the end; that one is merely empty.
                await self._check_offset(blob, key, offset)
                return
            async for chunk in download.chunks():
                yield chunk

    async def _check_offset(self, blob: BlobClient, key: str, offset: int) -> None:
        size = (await blob.get_blob_properties()).size
        if offset > size:
            raise InvalidRangeError(f"the range starts at {offset}, past the end ({size})")

    async def stat(self, key: str) -> ObjectInfo:
        blob = self._blob(key)
        with self._errors(key):
            props = await blob.get_blob_properties()
        return ObjectInfo(
            key=key,
            size=props.size,
            sha256=(props.metadata or {}).get(_SHA_META),
            content_type=props.content_settings.content_type or DEFAULT_CONTENT_TYPE,
        )

    async def copy(self, source_key: str, target_key: str) -> ObjectInfo:
        source, target = self._blob(source_key), self._blob(target_key)
        with self._errors(source_key):
            # No metadata given: the service copies the source's, with its content type.
            started = await target.start_copy_from_url(source.url)
        # Within one account the copy usually completes at once; a large one may run on.
        status = started.get("copy_status")
        polls = 0
        while status == "pending":
            await asyncio.sleep(min(0.05 * 2**polls, 1.0))
            polls += 1
            with self._errors(target_key):
                status = (await target.get_blob_properties()).copy.status
        if status != "success":
            raise StorageUnavailableError(
                f"copying {source_key!r} to {target_key!r} ended as {status!r}"
            )
        return await self.stat(target_key)

    async def delete(self, key: str) -> None:
        blob = self._blob(key)
        with self._errors(key):
            try:
                await blob.delete_blob(delete_snapshots="include")
            except HttpResponseError as exc:
                if exc.status_code != 404 or _error_code(exc) == "ContainerNotFound":
                    raise

    async def list(
        self, prefix: str, *, page_token: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> ListPage:
        validate_prefix(prefix)
        check_page_size(page_size)
        objects: list[ObjectInfo] = []
        with self._errors(prefix):
            pages = self._container.list_blobs(
                name_starts_with=prefix, include=["metadata"], results_per_page=page_size
            ).by_page(continuation_token=page_token)
            async for page in pages:
                async for blob in page:
                    objects.append(
                        ObjectInfo(
                            key=blob.name,
                            size=blob.size,
                            sha256=(blob.metadata or {}).get(_SHA_META),
                            content_type=blob.content_settings.content_type,
                        )
                    )
                break
        next_token: str | None = getattr(pages, "continuation_token", None)
        return ListPage(objects=objects, next_token=next_token or None)

    async def close(self) -> None:
        with self._errors(""):
            await self._service.close()


async def _parts(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """The chunks regrouped into parts of exactly ``size`` bytes, then one shorter part
    (maybe empty). Only the part being filled is held, never the bytes already sent."""
    pending: list[bytes] = []
    held = 0
    async for chunk in chunks:
        if held + len(chunk) < size:
            pending.append(chunk)
            held += len(chunk)
            continue
        view = memoryview(chunk)
        while held + len(view) >= size:
            pending.append(bytes(view[: size - held]))
            view = view[size - held :]
            part = b"".join(pending)
            pending.clear()
            held = 0
            yield part
        if view:
            pending.append(bytes(view))
            held = len(view)
    yield b"".join(pending)


def _error_code(exc: HttpResponseError) -> str:
    # The storage SDK sets it from the x-ms-error-code header; azure-core does not declare it.
    return str(getattr(exc, "error_code", None) or "")
