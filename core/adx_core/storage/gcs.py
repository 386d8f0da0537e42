"""The Google Cloud Storage provider, on google-cloud-storage.

The client is synchronous: every call runs in a worker thread, with its retries off (the
activities' retry policies decide when to try again) and the configured timeout. Real GCS
takes its credentials from the environment (application default credentials); with
``gcs_endpoint`` set the provider talks anonymously to that emulator.

GCS takes an object's metadata when its upload starts, but the SHA-256 is known only once
all of it has been read. An object that fits in one part is hashed first and sent in one
request with the hash. A larger one goes up as a resumable upload, one part per request,
and the hash is then patched onto the exact generation written: until then the new object
shows no hash, which the contract allows for objects written by someone else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, ParamSpec, TypeVar

import requests
from google.api_core import exceptions as api_errors
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[import-untyped]
from google.cloud.storage.exceptions import (  # type: ignore[import-untyped]
    DataCorruption,
    InvalidResponse,
)

from adx_core.settings import Settings
from adx_core.storage.errors import (
    ChecksumMismatchError,
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

__all__ = ["GcsStorage"]

P = ParamSpec("P")
T = TypeVar("T")

_SHA_KEY = "sha256"
# Every part of a resumable upload but the last is a multiple of this.
_RESUMABLE_QUANTUM = 256 * 1024
_LIST_FIELDS = "items(name,size,metadata,contentType),nextPageToken"
# What a copy carries over besides the bytes.
_COPIED_PROPERTIES = (
    "content_type",
    "metadata",
    "content_encoding",
    "content_disposition",
    "content_language",
    "cache_control",
)
_PERSISTED = re.compile(r"bytes=0-(\d+)")

_LIBRARY_ERRORS = (
    api_errors.GoogleAPIError,
    auth_errors.GoogleAuthError,
    InvalidResponse,
    DataCorruption,
    requests.RequestException,
    OSError,
)


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, api_errors.GoogleAPICallError):
        return exc.code
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def _classify(key: str, exc: BaseException) -> StorageError:
    """Everything but a 404, which needs a look at the bucket (see ``_not_found``).

    Messages name the class and the HTTP status, never the text of a library exception:
    that can carry a resumable upload's URL, which grants writing to it."""
    status = _status(exc)
    what = type(exc).__name__ + (f", HTTP {status}" if status else "")
    if isinstance(exc, auth_errors.TransportError) or (
        isinstance(exc, auth_errors.RefreshError) and exc.retryable
    ):
        return StorageUnavailableError(f"could not reach Google's token service ({what})")
    if isinstance(exc, auth_errors.GoogleAuthError):
        return StorageAuthError(f"the Google credentials could not be loaded or used ({what})")
    if status in (401, 403):
        return StorageAuthError(f"GCS refused the credentials for {key!r} ({what})")
    if status == 416:
        return InvalidRangeError(f"the range is outside {key!r}")
    if isinstance(exc, DataCorruption):
        return StorageUnavailableError(f"{key!r} was corrupted in transit ({what})")
    if status is None or status in (408, 429) or status >= 500:
        return StorageUnavailableError(f"GCS is unavailable for {key!r} ({what})")
    return StorageError(f"GCS rejected the request for {key!r} ({what})")


class GcsStorage(StorageProvider):
    name = "gcs"

    def __init__(
        self,
        bucket: str,
        *,
        project: str | None = None,
        endpoint: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        timeout: float = 30.0,
    ) -> None:
        self._bucket_name = bucket
        self._project = project
        self._endpoint = endpoint
        self._part_size = max(_RESUMABLE_QUANTUM, part_size - part_size % _RESUMABLE_QUANTUM)
        self._timeout = timeout
        # Made on first use, in a worker thread: finding the default credentials reads files.
        self._client: Any = None
        # Resumable upload URLs carry their own authorization: a plain session sends parts.
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._bucket_seen = False

    @classmethod
    def from_settings(cls, settings: Settings) -> GcsStorage:
        if not settings.gcs_bucket:
            raise StorageError("ADX_GCS_BUCKET is not set")
        return cls(
            settings.gcs_bucket,
            project=settings.gcs_project,
            endpoint=settings.gcs_endpoint,
            part_size=settings.storage_part_size,
            timeout=settings.storage_timeout_seconds,
        )

    def __repr__(self) -> str:
        where = self._endpoint or "Google Cloud Storage"
        return f"GcsStorage(bucket={self._bucket_name!r}, endpoint={where!r})"

    def _bucket(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client.bucket(self._bucket_name)

    def _new_client(self) -> Any:
        options: dict[str, Any] = {}
        if self._project:
            options["project"] = self._project
        if self._endpoint:
            options["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
            options["client_options"] = ClientOptions(api_endpoint=self._endpoint)
        client = storage.Client(**options)
        # The client fetches bucket metadata for its traces in threads of its own, with
        # its default retries: traffic nobody asked for, so off.
        client._bucket_metadata_cache = None
        return client

    async def _run(self, key: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except _LIBRARY_ERRORS as exc:
            if _status(exc) == 404:
                raise await self._not_found(key) from None
            raise _classify(key, exc) from None

    async def _not_found(self, key: str) -> StorageError:
        """A 404 is a missing object or a missing bucket, and the emulator's do not say which."""
        if not self._bucket_seen:
            try:
                exists = await asyncio.to_thread(self._bucket_listable)
            except _LIBRARY_ERRORS:
                exists = True  # cannot tell (no list permission?): the request's answer stands
            if not exists:
                return StorageError(f"the GCS bucket {self._bucket_name!r} does not exist")
            self._bucket_seen = True
        return ObjectNotFoundError(key)

    def _bucket_listable(self) -> bool:
        # Listing needs only object permissions, which is all a worker's account has.
        blobs = self._bucket().list_blobs(max_results=1, retry=None, timeout=self._timeout)
        try:
            next(blobs.pages, None)
        except api_errors.NotFound:
            return False
        return True

    async def ensure_container(self) -> None:
        await self._run("", self._ensure_bucket)
        self._bucket_seen = True

    def _ensure_bucket(self) -> None:
        bucket = self._bucket()
        if bucket.exists(retry=None, timeout=self._timeout):
            return
        if self._client.project is None:
            raise StorageError("set ADX_GCS_PROJECT to create the bucket")
        with contextlib.suppress(api_errors.Conflict):  # made meanwhile
            self._client.create_bucket(bucket, retry=None, timeout=self._timeout)

    async def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)
        self._session.close()

    # put

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        validate_key(key)
        digest = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        buffer = bytearray()
        size = sent = 0
        upload_url: str | None = None
        async for chunk in chunks:
            digest.update(chunk)
            md5.update(chunk)
            size += len(chunk)
            buffer += chunk
            # Strictly more than a part: the last part must go with the total size.
            while len(buffer) > self._part_size:
                if upload_url is None:
                    upload_url = await self._run(key, self._start_upload, key, content_type)
                with memoryview(buffer) as view:  # one copy of the part, not two
                    part = bytes(view[: self._part_size])
                del buffer[: self._part_size]
                await self._run(key, self._send, upload_url, part, sent, None)
                sent += len(part)
        info = ObjectInfo(key=key, size=size, sha256=digest.hexdigest(), content_type=content_type)
        last = bytes(buffer)
        del buffer
        if upload_url is None:
            await self._run(key, self._put_small, key, last, info)
            return info
        # An abandoned upload is invisible and GCS drops it after a week, so a failure
        # here leaves nothing to clean.
        written = await self._run(key, self._send, upload_url, last, sent, size)
        if written is None or int(written.get("size", -1)) != size:
            raise StorageUnavailableError(f"the upload of {key!r} did not complete")
        # The parts went up outside the library's checks: GCS's MD5 of what it stored
        # tells whether that is what was read.
        expected_md5 = base64.b64encode(md5.digest()).decode()
        stored_md5 = written.get("md5Hash")
        if stored_md5 and stored_md5 != expected_md5:
            raise ChecksumMismatchError(key, expected_md5, stored_md5)
        await self._run(key, self._record_sha256, key, int(written["generation"]), info.sha256)
        return info

    def _put_small(self, key: str, data: bytes, info: ObjectInfo) -> None:
        blob = self._bucket().blob(key)
        blob.metadata = {_SHA_KEY: info.sha256}
        blob.upload_from_string(
            data, content_type=info.content_type, retry=None, timeout=self._timeout
        )

    def _start_upload(self, key: str, content_type: str) -> str:
        url: str = (
            self._bucket()
            .blob(key)
            .create_resumable_upload_session(
                content_type=content_type, checksum=None, retry=None, timeout=self._timeout
            )
        )
        return url

    def _send(self, url: str, data: bytes, start: int, total: int | None) -> dict[str, Any] | None:
        """One part of a resumable upload: ``None`` while more are to come, the object's
        resource once ``total`` bytes are in. GCS may keep less of a part than it was
        sent; the rest is sent again."""
        end = start + len(data)
        offset = start
        while True:
            size = "*" if total is None else str(total)
            response = self._session.put(
                url,
                data=data[offset - start :] if offset > start else data,
                headers={"Content-Range": f"bytes {offset}-{end - 1}/{size}"},
                timeout=self._timeout,
            )
            if response.status_code in (200, 201):
                resource: dict[str, Any] = response.json()
                return resource
            if response.status_code in (404, 410):
                # The session expired or was cancelled: a new put starts a new one.
                raise StorageUnavailableError("the resumable upload session is gone")
            if response.status_code != 308:
                raise api_errors.from_http_response(response)  # type: ignore[no-untyped-call]
            match = _PERSISTED.fullmatch(response.headers.get("Range", ""))
            persisted = int(match.group(1)) + 1 if match else 0
            if persisted >= end and total is None:
                return None
            if not offset < persisted < end:
                raise StorageUnavailableError("the resumable upload made no progress")
            offset = persisted

    def _record_sha256(self, key: str, generation: int, sha256: str | None) -> None:
        blob = self._bucket().blob(key)
        blob.metadata = {_SHA_KEY: sha256}
        # Only the generation this put wrote: a newer one is another writer's.
        with contextlib.suppress(api_errors.PreconditionFailed, api_errors.NotFound):
            blob.patch(if_generation_match=generation, retry=None, timeout=self._timeout)

    # get, stat

    async def get(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        validate_key(key)
        check_range(offset, length)
        blob = await self._run(key, self._reload, key)
        size = int(blob.size or 0)
        if offset > size:
            raise InvalidRangeError(f"the range starts at {offset}, past the end ({size})")
        end = size if length is None else min(size, offset + length)
        # Every part from the generation stat saw: a replaced object ends the read with
        # ObjectNotFoundError instead of mixing two versions.
        pinned = self._bucket().blob(key, generation=blob.generation)
        while offset < end:
            chunk: bytes = await self._run(
                key,
                pinned.download_as_bytes,
                start=offset,
                end=min(end, offset + self._part_size) - 1,
                raw_download=True,
                checksum=None,
                retry=None,
                timeout=self._timeout,
            )
            if not chunk:
                raise StorageUnavailableError(f"GCS sent nothing for {key!r} at {offset}")
            offset += len(chunk)
            yield chunk

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        return _info(await self._run(key, self._reload, key))

    def _reload(self, key: str) -> Any:
        blob = self._bucket().blob(key)
        blob.reload(projection="noAcl", retry=None, timeout=self._timeout)
        return blob

    # copy, delete

    async def copy(self, source_key: str, target_key: str) -> ObjectInfo:
        validate_key(source_key)
        validate_key(target_key)
        return _info(await self._run(source_key, self._copy, source_key, target_key))

    def _copy(self, source_key: str, target_key: str) -> Any:
        source = self._reload(source_key)
        pinned = self._bucket().blob(source_key, generation=source.generation)
        target = self._bucket().blob(target_key)
        # A rewrite with a body takes the target's properties from it, so they are named.
        for name in _COPIED_PROPERTIES:
            value = getattr(source, name)
            if value is not None:
                setattr(target, name, value)
        token: str | None = None
        while True:  # large or cross-class rewrites take several calls
            token, _, _ = target.rewrite(pinned, token=token, retry=None, timeout=self._timeout)
            if token is None:
                return target

    async def delete(self, key: str) -> None:
        validate_key(key)
        with contextlib.suppress(ObjectNotFoundError):
            await self._run(key, self._delete, key)

    def _delete(self, key: str) -> None:
        self._bucket().blob(key).delete(retry=None, timeout=self._timeout)

    # list

    async def list(
        self, prefix: str, *, page_token: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> ListPage:
        validate_prefix(prefix)
        check_page_size(page_size)
        page = await self._run(prefix, self._list, prefix, page_token, page_size)
        self._bucket_seen = True
        return page

    def _list(self, prefix: str, token: str | None, page_size: int) -> ListPage:
        """One page of GCS's listing, its page token wrapped as ``g:<token>``.

        A server that ignores ``maxResults`` (the emulator does) is paged here instead:
        ``k:<key>`` resumes at that key, with ``startOffset`` and a check of each name."""
        start: str | None = None
        gcs_token: str | None = None
        if token is not None:
            kind, _, value = token.partition(":")
            if kind not in ("g", "k") or not value:
                raise ValueError("not a page token of this provider")
            start, gcs_token = (value, None) if kind == "k" else (None, value)
        iterator = self._bucket().list_blobs(
            prefix=prefix,
            max_results=page_size,
            page_token=gcs_token,
            start_offset=start,
            fields=_LIST_FIELDS,
            retry=None,
            timeout=self._timeout,
        )
        page = next(iterator.pages, None)
        blobs = [] if page is None else [b for b in page if start is None or b.name >= start]
        if len(blobs) > page_size:
            return ListPage([_info(b) for b in blobs[:page_size]], f"k:{blobs[page_size].name}")
        more = iterator.next_page_token
        return ListPage([_info(b) for b in blobs], f"g:{more}" if more else None)


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        key=blob.name,
        size=int(blob.size or 0),
        sha256=(blob.metadata or {}).get(_SHA_KEY),
        content_type=blob.content_type or DEFAULT_CONTENT_TYPE,
    )
