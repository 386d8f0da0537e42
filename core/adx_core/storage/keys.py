"""Storage keys. Only validated ids and validated relative paths go into a key, so no input
can climb out of a tenant's prefix. Every provider checks every key again before any I/O."""

from __future__ import annotations

import unicodedata
import uuid

from adx_core.storage.errors import UnsafeKeyError

MAX_KEY_BYTES = 1024
# Names the local provider uses for its own files; no object may take them.
RESERVED_SEGMENT_PREFIX = ".adx-partial-"


def tenant_prefix(tenant_id: str | uuid.UUID) -> str:
    """``tenants/<uuid>/``. Raises ``ValueError`` for anything that is not a UUID."""
    return f"tenants/{uuid.UUID(str(tenant_id))}/"


def _check_text(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise UnsafeKeyError(f"the {what} is empty")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UnsafeKeyError(f"the {what} is longer than {MAX_KEY_BYTES} bytes")
    for char in value:
        # Cc: NUL, the C0 and C1 controls and DEL; Cs: lone surrogates, not encodable.
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise UnsafeKeyError(f"the {what} holds a control character ({ord(char):#04x})")
    if "\\" in value:
        raise UnsafeKeyError(f"the {what} holds a backslash")
    if value.startswith("/"):
        raise UnsafeKeyError(f"the {what} is an absolute path")


def _check_segments(segments: list[str], what: str) -> None:
    for segment in segments:
        if segment in ("", ".", ".."):
            raise UnsafeKeyError(f"the {what} has an empty, '.' or '..' segment")
        if segment.startswith(RESERVED_SEGMENT_PREFIX):
            raise UnsafeKeyError(f"the {what} uses a reserved name")


def validate_key(key: str) -> str:
    """An object key: relative, ``/``-separated, no empty, ``.`` or ``..`` segment, no
    control character, no backslash, at most 1024 bytes. Returns it unchanged."""
    _check_text(key, "key")
    _check_segments(key.split("/"), "key")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: like a key, but it may end with ``/``."""
    _check_text(prefix, "prefix")
    segments = prefix.split("/")
    _check_segments(segments[:-1] if prefix.endswith("/") else segments, "prefix")
    return prefix


def tenant_key(tenant_id: str | uuid.UUID, relative: str) -> str:
    """``tenants/<uuid>/<relative>``, after checking that ``relative`` stays inside."""
    return tenant_prefix(tenant_id) + validate_key(relative)


def tenant_subprefix(tenant_id: str | uuid.UUID, relative: str) -> str:
    """The tenant's prefix, or a folder inside it (``invoices/2024/``) when ``relative``
    is given. The result always ends with ``/``."""
    base = tenant_prefix(tenant_id)
    if not relative:
        return base
    relative = validate_prefix(relative)
    return base + (relative if relative.endswith("/") else relative + "/")
