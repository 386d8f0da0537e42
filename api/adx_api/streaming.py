"""Serving a stored object over HTTP: streamed, one byte range (RFC 9110), conditional on
its ETag, and with the headers that keep a browser from treating user content as ours."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from adx_api.problems import ProblemError
from adx_core.storage import ObjectNotFoundError, StorageError, StorageProvider

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._ -]")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single satisfiable range, ``None`` for the whole object. Several
    ranges, or a header we do not understand, are served whole (RFC 9110 allows it); a
    range that starts past the end is 416."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first_raw, last_raw = match.groups()
    if not first_raw and not last_raw:
        return None
    if not first_raw:  # the last N bytes
        suffix = int(last_raw)
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_raw)
    last = int(last_raw) if last_raw else size - 1
    if last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> ProblemError:
    return ProblemError(
        416,
        "range-not-satisfiable",
        "the range is outside the file",
        headers={"Content-Range": f"bytes */{size}"},
    )


def content_disposition(name: str | None) -> str:
    """``attachment`` with an ASCII fallback and the RFC 5987 UTF-8 name (RFC 6266)."""
    if not name:
        return "attachment"
    fallback = _ASCII_SAFE.sub("_", name)[:150] or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def stream_object(
    request: web.Request,
    store: StorageProvider,
    key: str,
    *,
    size: int,
    content_type: str,
    etag: str | None,
    download_name: str | None,
    cache: str = "private, max-age=0, must-revalidate",
) -> web.StreamResponse:
    quoted_etag = f'"{etag}"' if etag else None
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": cache,
        "X-Content-Type-Options": "nosniff",
        # User content must never run as this origin, whatever its type claims.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": content_disposition(download_name)
        if download_name is not None
        else "inline",
    }
    if quoted_etag:
        headers["ETag"] = quoted_etag
        if request.headers.get("If-None-Match") == quoted_etag:
            return web.Response(status=304, headers=headers)
    span = byte_range(request.headers.get("Range"), size)
    if span is not None and request.headers.get("If-Range") not in (None, quoted_etag):
        span = None  # the client's partial copy is of another version: send it whole
    first, last = span if span is not None else (0, size - 1)
    length = max(0, last - first + 1)
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.content_type = content_type
    response.content_length = length
    if span is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    chunks = store.get(key, offset=first, length=length)
    try:
        # The first chunk before the headers: a missing object is still a clean error.
        first_chunk = await anext(aiter(chunks), b"") if length else b""
    except ObjectNotFoundError:
        raise ProblemError(404, "not-found", "the file's bytes are missing") from None
    except StorageError:
        raise ProblemError(
            503, "unavailable", "storage is unavailable; try again", headers={"Retry-After": "5"}
        ) from None
    await response.prepare(request)
    if request.method != "HEAD":
        if first_chunk:
            await response.write(first_chunk)
        if length:
            async for chunk in chunks:
                await response.write(chunk)
    await response.write_eof()
    return response
