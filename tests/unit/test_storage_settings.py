"""Storage settings, keys and the provider registry: what is refused, and how."""

from __future__ import annotations

from pathlib import Path

import pytest

from adx_core.settings import Settings, SettingsError, StorageKind, load_settings
from adx_core.storage import (
    LocalStorage,
    StorageNotConfiguredError,
    StorageRegistry,
    UnsafeKeyError,
    open_storage,
    tenant_subprefix,
)
from adx_core.storage.keys import validate_prefix

TENANT = "5b0f3a52-1d1e-4c55-8f43-6f0a9f1c2d7e"


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("", f"tenants/{TENANT}/"),
        ("invoices", f"tenants/{TENANT}/invoices/"),
        ("a/b/", f"tenants/{TENANT}/a/b/"),
    ],
)
def test_a_folder_inside_a_tenant(relative: str, expected: str) -> None:
    assert tenant_subprefix(TENANT, relative) == expected


@pytest.mark.parametrize("prefix", ["../", "a/../b/", "/abs/", "a\x00/", "a//", "\\x/"])
def test_unsafe_prefixes(prefix: str) -> None:
    with pytest.raises(UnsafeKeyError):
        validate_prefix(prefix)
    with pytest.raises(UnsafeKeyError):
        tenant_subprefix(TENANT, prefix)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"ADX_STORAGE_PROVIDER": "s3"}, "ADX_S3_BUCKET, ADX_S3_ACCESS_KEY, ADX_S3_SECRET_KEY"),
        ({"ADX_STORAGE_PROVIDER": "gcs"}, "ADX_GCS_BUCKET"),
        ({"ADX_STORAGE_PROVIDER": "azure", "ADX_AZURE_CONTAINER": "c"}, "ADX_AZURE_CONNECTION"),
    ],
)
def test_a_default_provider_without_its_settings_stops_the_process(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=missing):
        load_settings()


def test_an_unknown_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADX_STORAGE_PROVIDER", "ftp")
    with pytest.raises(SettingsError, match="ADX_STORAGE_PROVIDER"):
        load_settings()


def test_credentials_come_from_mounted_secrets_and_never_show(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Secret mounted as files (one per setting) configures S3; printing the settings
    or the provider shows no secret."""
    (tmp_path / "adx_s3_secret_key").write_text("s3cr3t-from-a-file")
    (tmp_path / "adx_s3_access_key").write_text("AKIAFROMFILE")
    monkeypatch.setenv("ADX_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("ADX_S3_BUCKET", "files")
    monkeypatch.setenv("ADX_S3_ENDPOINT", "127.0.0.1:9")
    settings = load_settings()
    assert settings.s3_secret_key is not None
    assert settings.s3_secret_key.get_secret_value() == "s3cr3t-from-a-file"
    assert StorageKind.S3 in settings.storage_kinds
    provider = open_storage(settings, "s3")
    for text in (repr(settings), str(settings), repr(provider), str(provider)):
        assert "s3cr3t" not in text
        assert "AKIAFROMFILE" not in text


def test_the_usual_cloud_variables_work_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    settings = Settings()
    assert settings.s3_access_key is not None
    assert settings.azure_connection_string is not None


async def test_the_registry_names_what_is_missing(tmp_path: Path) -> None:
    settings = Settings(storage_root=tmp_path)
    stores = StorageRegistry(settings)
    assert stores.configured == (StorageKind.LOCAL,)
    assert isinstance(stores.get(), LocalStorage)
    assert stores.get("local") is stores.get(StorageKind.LOCAL)
    with pytest.raises(StorageNotConfiguredError, match="ADX_GCS_BUCKET"):
        stores.get("gcs")
    with pytest.raises(StorageNotConfiguredError, match="unknown storage provider 'ftp'"):
        stores.get("ftp")
    await stores.close()
