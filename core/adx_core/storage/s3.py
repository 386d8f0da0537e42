"""The S3 provider (AWS S3, MinIO, or any S3-compatible service), on the minio client.

minio is synchronous: every call runs in a worker thread. Its retries are off (the
activities' retry policies decide when to try again) and every request has the configured
timeout.

S3 takes an object's metadata when its upload starts, but the SHA-256 is known only once
all of it has been read. An object that fits in one part is hashed first and sent in one
request. A larger one goes up in parts to a staging key at the bucket root, out of every
tenant's prefix, and is then copied server-side onto its key with the hash in its
metadata. Either way a reader sees the old object or the whole new one.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import io
import itertools
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.datatypes import Object
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import DictType, check_bucket_name

from adx_core.settings import Settings
from adx_core.storage.errors import (
    InvalidRangeError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)
from adx_core.storage.keys import RESERVED_SEGMENT_PREFIX, validate_key, validate_prefix
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

__all__ = ["S3Storage"]

P = ParamSpec("P")
T = TypeVar("T")

_SHA_HEADER = "x-amz-meta-sha256"
_CLIENT_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "NoSuchVersion"})
# Refused credentials that S3 answers with 400 rather than 401 or 403.
_AUTH_CODES = frozenset(
    {"AuthorizationHeaderMalformed", "ExpiredToken", "InvalidAccessKeyId", "InvalidToken"}
)
_RETRYABLE_CODES = frozenset(
    {"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "ServiceUnavailable"}
)
# Uploads run on threads of their own: each blocks on the event loop for its next chunk,
# and a source that reads through asyncio.to_thread (another provider's get) must still
# find the default executor free, or a migration would deadlock.
_UPLOAD_THREADS = 16
_POOL_CONNECTIONS = 32


class _UploadAborted(Exception):
    """The put was cancelled or its source failed; minio aborts the multipart upload."""


class _ChunkReader:
    """A blocking ``read()`` over an async iterator, for minio's ``put_object`` in a worker
    thread. Each read pulls chunks from the event loop, hashing them on the way, and keeps
    at most one chunk beyond what minio asked for: memory stays at about one part."""

    def __init__(
        self,
        head: list[bytes],
        rest: AsyncIterator[bytes],
        digest: hashlib._Hash,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._pending = collections.deque(memoryview(chunk) for chunk in head)
        self._rest = rest
        self._digest = digest
        self._loop = loop
        self._done = False
        self._aborted = False
        self._waiting: concurrent.futures.Future[bytes | None] | None = None
        self.failure: Exception | None = None
        self.size = sum(len(chunk) for chunk in head)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end. minio always asks for a size."""
        out: list[memoryview] = []
        got = 0
        while got < size:
            if not self._pending:
                chunk = self._pull()
                if chunk is None:
                    break
                self._pending.append(memoryview(chunk))
            view = self._pending.popleft()
            if got + len(view) > size:
                self._pending.appendleft(view[size - got :])
                view = view[: size - got]
            out.append(view)
            got += len(view)
        return b"".join(out)

    def _pull(self) -> bytes | None:
        if self._done:
            return None
        future = asyncio.run_coroutine_threadsafe(_next_chunk(self._rest), self._loop)
        self._waiting = future
        # Wait in slices: a slow source is fine, but a cancelled put must stop us.
        while not future.done():
            if self._aborted or self._loop.is_closed():
                future.cancel()
                raise _UploadAborted
            concurrent.futures.wait([future], timeout=1.0)
        self._waiting = None
        try:
            chunk = future.result()
        except Exception as exc:
            # The source's own error, kept for the put to raise once minio has aborted.
            self.failure = exc
            raise _UploadAborted from None
        if chunk is None:
            self._done = True
            return None
        self._digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def abort(self) -> None:
        """Called on the event loop when the put is cancelled: the upload thread stops at
        its next read instead of going on consuming the source in the background."""
        self._aborted = True
        waiting = self._waiting
        if waiting is not None:
            waiting.cancel()


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    return await anext(chunks, None)


async def _first_part(
    chunks: AsyncIterator[bytes], digest: hashlib._Hash, part_size: int
) -> tuple[list[bytes], int]:
    """Chunks up to just past one part, or all of them if the object is smaller."""
    head: list[bytes] = []
    size = 0
    async for chunk in chunks:
        digest.update(chunk)
        head.append(chunk)
        size += len(chunk)
        if size > part_size:
            break
    return head, size


def _info(key: str, obj: Object) -> ObjectInfo:
    headers = obj.metadata or {}
    return ObjectInfo(
        key=key,
        size=obj.size or 0,
        sha256=headers.get(_SHA_HEADER),
        content_type=obj.content_type or DEFAULT_CONTENT_TYPE,
    )


def _metadata(obj: Object) -> DictType:
    """The content type and user metadata of ``obj``, to set on a copy."""
    metadata: DictType = {"Content-Type": obj.content_type or DEFAULT_CONTENT_TYPE}
    for name, value in (obj.metadata or {}).items():
        if name.lower().startswith("x-amz-meta-"):
            metadata[name.lower()] = value
    return metadata


class S3Storage(StorageProvider):
    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        access_key: str,
        secret_key: str,
        endpoint: str | None = None,
        region: str = "us-east-1",
        secure: bool = True,
        part_size: int = DEFAULT_PART_SIZE,
        timeout: float = 30.0,
    ) -> None:
        try:
            check_bucket_name(bucket)
        except ValueError:
            raise StorageError(f"{bucket!r} is not a valid S3 bucket name") from None
        self._bucket = bucket
        self._endpoint = endpoint or "s3.amazonaws.com"
        self._region = region
        self._part_size = part_size
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            maxsize=_POOL_CONNECTIONS,
        )
        # The credentials live only inside the client, never on this object.
        try:
            self._client = Minio(
                self._endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=self._http,
            )
        except ValueError:
            raise StorageError(f"the S3 endpoint {self._endpoint!r} is not host[:port]") from None
        self._uploads = ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="adx-s3-upload")
        self._bucket_seen = False

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        if not (settings.s3_bucket and settings.s3_access_key and settings.s3_secret_key):
            raise StorageError("S3 needs ADX_S3_BUCKET, ADX_S3_ACCESS_KEY and ADX_S3_SECRET_KEY")
        return cls(
            bucket=settings.s3_bucket,
            access_key=settings.s3_access_key.get_secret_value(),
            secret_key=settings.s3_secret_key.get_secret_value(),
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            secure=settings.s3_secure,
            part_size=settings.storage_part_size,
            timeout=settings.storage_timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"S3Storage(endpoint={self._endpoint!r}, bucket={self._bucket!r})"

    async def _run(self, key: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except _CLIENT_ERRORS as exc:
            raise self._translate(key, exc) from None

    def _translate(self, key: str, exc: Exception) -> StorageError:
        # Messages carry the S3 error code and status, never the server's text: some
        # services echo the access key or the string they signed.
        code = ""
        if isinstance(exc, S3Error):
            code = exc.code or ""
            status = exc.response.status if exc.response is not None else 0
        elif isinstance(exc, ServerError):
            status = exc.status_code
        elif isinstance(exc, InvalidResponseError):
            status = int(getattr(exc, "_code", 0))  # a proxy's non-XML answer
        else:
            return StorageUnavailableError(
                f"S3 at {self._endpoint} could not be reached ({type(exc).__name__})"
            )
        what = f"S3 answered {code or 'an error'} (HTTP {status}) for {key!r}"
        if code == "NoSuchBucket":
            return self._no_bucket()
        if code in _NOT_FOUND_CODES or (status == 404 and not code):
            return ObjectNotFoundError(key)
        if code == "InvalidRange" or status == 416:
            return InvalidRangeError(what)
        if status in (401, 403) or code in _AUTH_CODES:
            return StorageAuthError(
                f"S3 refused the credentials for bucket {self._bucket!r} ({code or status})"
            )
        if status == 429 or status >= 500 or code in _RETRYABLE_CODES:
            return StorageUnavailableError(what)
        if code == "PreconditionFailed":
            return StorageUnavailableError(f"{key!r} changed while it was copied")
        return StorageError(what)

    def _no_bucket(self) -> StorageError:
        return StorageError(f"the S3 bucket {self._bucket!r} does not exist at {self._endpoint}")

    async def _head(self, key: str) -> Object:
        try:
            return await self._run(key, self._client.stat_object, self._bucket, key)
        except ObjectNotFoundError:
            # A HEAD has no body to tell a missing bucket from a missing key: ask once.
            if not self._bucket_seen:
                if not await self._run(key, self._client.bucket_exists, self._bucket):
                    raise self._no_bucket() from None
                self._bucket_seen = True
            raise

    async def ensure_container(self) -> None:
        await self._run("", self._ensure_bucket)
        self._bucket_seen = True

    def _ensure_bucket(self) -> None:
        if self._client.bucket_exists(self._bucket):
            return
        try:
            self._client.make_bucket(self._bucket, location=self._region)
        except S3Error as exc:
            if exc.code != "BucketAlreadyOwnedByYou":  # created meanwhile by another worker
                raise

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        validate_key(key)
        source = aiter(chunks)
        digest = hashlib.sha256()
        head, size = await _first_part(source, digest, self._part_size)
        if size <= self._part_size:
            data = b"".join(head)
            del head
            sha256 = digest.hexdigest()
            written = await self._run(
                key,
                self._client.put_object,
                self._bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={"sha256": sha256},
                part_size=self._part_size,
            )
            # A single-part upload's ETag is the MD5 S3 computed over what it stored (not
            # with SSE-KMS or SSE-C, whose ETags are opaque: those are read back instead).
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            return ObjectInfo(
                key=key,
                size=size,
                sha256=sha256,
                content_type=content_type,
                service_verified=(written.etag or "").strip('"').lower() == md5,
            )

        staging = f"{RESERVED_SEGMENT_PREFIX}{uuid.uuid4().hex}"
        reader = _ChunkReader(head, source, digest, asyncio.get_running_loop())
        del head
        etag = await self._upload(key, staging, reader, content_type)
        try:
            sha256 = digest.hexdigest()
            await self._copy(
                staging, key, etag, {"Content-Type": content_type, "sha256": sha256}, error_key=key
            )
        finally:
            # Cleanup only: a staging object left behind is garbage, not a failed put.
            with contextlib.suppress(StorageError):
                await self._run(key, self._client.remove_object, self._bucket, staging)
        return ObjectInfo(key=key, size=reader.size, sha256=sha256, content_type=content_type)

    async def _upload(self, key: str, staging: str, reader: _ChunkReader, content_type: str) -> str:
        """A multipart upload of the reader to ``staging``; its ETag."""
        loop = asyncio.get_running_loop()
        # One part in flight at a time: parallel parts would each hold a part in memory.
        upload = loop.run_in_executor(
            self._uploads,
            lambda: self._client.put_object(
                self._bucket,
                staging,
                reader,  # type: ignore[arg-type]  # minio needs only read()
                -1,
                content_type=content_type,
                part_size=self._part_size,
                num_parallel_uploads=1,
            ),
        )
        try:
            result = await upload
        except asyncio.CancelledError:
            reader.abort()
            raise
        except _UploadAborted:
            if reader.failure is None:
                raise StorageUnavailableError(f"the upload of {key!r} was aborted") from None
            raise reader.failure from None
        except _CLIENT_ERRORS as exc:
            raise self._translate(key, exc) from None
        return result.etag or ""

    async def _copy(
        self, source: str, target: str, etag: str, metadata: DictType, *, error_key: str
    ) -> None:
        # Metadata is always given (REPLACE): minio switches to a multipart copy above
        # 5 GiB, where S3 would not carry it over. The ETag makes S3 refuse a source that
        # changed since we read its metadata.
        await self._run(
            error_key,
            self._client.copy_object,
            self._bucket,
            target,
            CopySource(self._bucket, source, match_etag=etag or None),
            metadata=metadata,
            metadata_directive=REPLACE,
        )

    async def get(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        validate_key(key)
        check_range(offset, length)
        if length == 0:
            await self._check_offset(key, offset)
            return
        try:
            response = await self._run(
                key, self._client.get_object, self._bucket, key, offset=offset, length=length or 0
            )
        except InvalidRangeError:
            # S3 refuses any range at or past the end (an empty object has no range at all);
            # only one that starts past the end is an error here.
            await self._check_offset(key, offset)
            return
        try:
            while chunk := await self._run(key, response.read, self._part_size):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def _check_offset(self, key: str, offset: int) -> None:
        size = (await self._head(key)).size or 0
        if offset > size:
            raise InvalidRangeError(f"the range starts at {offset}, past the end ({size})")

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        return _info(key, await self._head(key))

    async def copy(self, source_key: str, target_key: str) -> ObjectInfo:
        validate_key(source_key)
        validate_key(target_key)
        source = await self._head(source_key)
        await self._copy(
            source_key, target_key, source.etag or "", _metadata(source), error_key=source_key
        )
        return _info(target_key, source)

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._run(key, self._client.remove_object, self._bucket, key)

    async def list(
        self, prefix: str, *, page_token: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> ListPage:
        validate_prefix(prefix)
        check_page_size(page_size)
        return await self._run(prefix, self._list, prefix, page_token, page_size)

    def _list(self, prefix: str, after: str | None, page_size: int) -> ListPage:
        listing = self._client.list_objects(
            self._bucket, prefix=prefix, recursive=True, start_after=after
        )
        # One request: S3 returns up to 1000 keys a page, and page_size is at most that.
        raw: list[Object] = list(itertools.islice(listing, page_size))
        objects = [
            ObjectInfo(key=obj.object_name, size=obj.size or 0)
            for obj in raw
            if obj.object_name and not obj.object_name.startswith(RESERVED_SEGMENT_PREFIX)
        ]
        next_token = raw[-1].object_name if len(raw) == page_size else None
        return ListPage(objects=objects, next_token=next_token)

    async def close(self) -> None:
        self._uploads.shutdown(wait=False, cancel_futures=True)
        self._http.clear()
