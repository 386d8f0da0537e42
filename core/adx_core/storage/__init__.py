"""Object storage behind one small interface; keys are built only from validated ids."""

from adx_core.storage.keys import tenant_prefix
from adx_core.storage.local import LocalStorage
from adx_core.storage.provider import StorageProvider

__all__ = ["LocalStorage", "StorageProvider", "tenant_prefix"]
