"""Opening providers by kind from the settings, once per process."""

from __future__ import annotations

from collections.abc import Mapping

from adx_core.settings import Settings, StorageKind
from adx_core.storage.local import LocalStorage
from adx_core.storage.provider import StorageProvider


class StorageNotConfiguredError(LookupError):
    """A provider was asked for whose settings are missing."""


def open_storage(settings: Settings, kind: StorageKind | str) -> StorageProvider:
    """A new provider of ``kind``. The client libraries are imported only when used, so a
    process that never touches Azure does not load its SDK."""
    try:
        kind = StorageKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in StorageKind)
        raise StorageNotConfiguredError(
            f"unknown storage provider {kind!r} (known: {known})"
        ) from None
    missing = settings.storage_missing(kind)
    if missing:
        raise StorageNotConfiguredError(
            f"storage provider {kind.value!r} is not configured: set {', '.join(missing)}"
        )
    if kind is StorageKind.S3:
        from adx_core.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    if kind is StorageKind.GCS:
        from adx_core.storage.gcs import GcsStorage

        return GcsStorage.from_settings(settings)
    if kind is StorageKind.AZURE:
        from adx_core.storage.azure import AzureStorage

        return AzureStorage.from_settings(settings)
    return LocalStorage(settings.storage_root, chunk_size=settings.storage_part_size)


class StorageRegistry:
    """The providers of one process, opened on first use and closed together."""

    def __init__(
        self, settings: Settings, providers: Mapping[StorageKind, StorageProvider] | None = None
    ) -> None:
        self._settings = settings
        self._open: dict[StorageKind, StorageProvider] = dict(providers or {})

    @property
    def default_kind(self) -> StorageKind:
        return self._settings.storage_provider

    @property
    def configured(self) -> tuple[StorageKind, ...]:
        return tuple(dict.fromkeys((*self._open, *self._settings.storage_kinds)))

    def get(self, kind: StorageKind | str | None = None) -> StorageProvider:
        """The provider of ``kind`` (the default one when ``None``)."""
        if kind is None:
            kind = self.default_kind
        try:
            kind = StorageKind(kind)
        except ValueError:
            return open_storage(self._settings, kind)  # raises with the list of known kinds
        if kind not in self._open:
            self._open[kind] = open_storage(self._settings, kind)
        return self._open[kind]

    async def close(self) -> None:
        providers, self._open = list(self._open.values()), {}
        for provider in providers:
            await provider.close()
