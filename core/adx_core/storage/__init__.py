"""Object storage behind one interface; keys are built only from validated ids."""

from adx_core.storage.errors import (
    ChecksumMismatchError,
    InvalidRangeError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
    UnsafeKeyError,
)
from adx_core.storage.keys import tenant_key, tenant_prefix, tenant_subprefix, validate_key
from adx_core.storage.local import LocalStorage
from adx_core.storage.provider import ListPage, ObjectInfo, PrefixUsage, StorageProvider
from adx_core.storage.registry import StorageNotConfiguredError, StorageRegistry, open_storage

__all__ = [
    "ChecksumMismatchError",
    "InvalidRangeError",
    "ListPage",
    "LocalStorage",
    "ObjectInfo",
    "ObjectNotFoundError",
    "PrefixUsage",
    "StorageAuthError",
    "StorageError",
    "StorageNotConfiguredError",
    "StorageProvider",
    "StorageRegistry",
    "StorageUnavailableError",
    "UnsafeKeyError",
    "open_storage",
    "tenant_key",
    "tenant_prefix",
    "tenant_subprefix",
    "validate_key",
]
