"""Settings are validated at start: a bad environment fails early, naming the variable."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from adx_core.settings import Environment, Settings, SettingsError, load_settings, parse_codec_keys

KEY1 = base64.b64encode(b"1" * 32).decode()
KEY2 = base64.b64encode(b"2" * 32).decode()
SECRET = "x" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from an environment without ADX_* variables."""
    for name in list(os.environ):
        if name.startswith("ADX_"):
            monkeypatch.delenv(name)


def test_codec_keys_parse_ids_and_keys() -> None:
    """``kid:base64`` pairs become a mapping of ids to 32-byte keys; blanks are ignored."""
    keys = parse_codec_keys(f" k1:{KEY1} , ,k2:{KEY2},")
    assert keys == {"k1": b"1" * 32, "k2": b"2" * 32}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (f"k1:{base64.b64encode(b'short').decode()}", "32 bytes"),
        (f"k1:{base64.b64encode(b'1' * 33).decode()}", "32 bytes"),
        ("k1:not*base64!", "not valid base64"),
        (f"k1:{KEY1},k1:{KEY2}", "appears twice"),
        (KEY1, "<key id>:<base64 key>"),
        (f":{KEY1}", "<key id>:<base64 key>"),
        ("k1:", "<key id>:<base64 key>"),
        (f"bad id:{KEY1}", "letters, digits"),
        (f"{'k' * 33}:{KEY1}", "letters, digits"),
    ],
)
def test_bad_codec_keys_are_rejected(raw: str, message: str) -> None:
    """Wrong length, bad base64, duplicate or malformed ids all refuse to parse."""
    with pytest.raises(ValueError, match=message):
        parse_codec_keys(raw)


def test_active_key_defaults_to_the_first_and_must_be_configured() -> None:
    """The first key is active unless named; naming an unknown id is an error."""
    settings = Settings(codec_keys=f"k1:{KEY1},k2:{KEY2}")
    assert settings.codec_active_key_id == "k1"
    rotated = Settings(codec_keys=f"k1:{KEY1},k2:{KEY2}", codec_active_key_id="k2")
    assert rotated.codec_active_key_id == "k2"
    with pytest.raises(ValidationError, match="ADX_CODEC_ACTIVE_KEY_ID"):
        Settings(codec_keys=f"k1:{KEY1}", codec_active_key_id="k9")


def test_production_requires_codec_keys_and_jwt_secret() -> None:
    """Production refuses to start without payload encryption or token signing."""
    with pytest.raises(ValidationError) as info:
        Settings(env=Environment.PRODUCTION)
    assert "ADX_CODEC_KEYS" in str(info.value)
    assert "ADX_JWT_SECRET" in str(info.value)
    with pytest.raises(ValidationError, match="ADX_JWT_SECRET"):
        Settings(env=Environment.PRODUCTION, codec_keys=f"k1:{KEY1}")
    with pytest.raises(ValidationError, match="ADX_CODEC_KEYS"):
        Settings(env=Environment.PRODUCTION, jwt_secret=SECRET)
    ok = Settings(env=Environment.PRODUCTION, jwt_secret=SECRET, codec_keys=f"k1:{KEY1}")
    assert ok.env is Environment.PRODUCTION


def test_short_jwt_secret_is_rejected() -> None:
    """An HS256 secret shorter than 32 characters is refused in every environment."""
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(jwt_secret="x" * 31)
    assert Settings(jwt_secret=SECRET).jwt_secret is not None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u:p@localhost/adx", "postgresql"),
        ("sqlite:///adx.db", "postgresql"),
        ("postgresql://bob'; drop role x;--:p@localhost/adx", "plain role name"),
        ('postgresql+asyncpg://"adx":p@localhost/adx', "plain role name"),
        ("postgresql://Admin:p@localhost/adx", "plain role name"),
    ],
)
def test_bad_database_urls_are_rejected(url: str, message: str) -> None:
    """Only PostgreSQL URLs with plain role names (they are written into DDL) pass."""
    with pytest.raises(ValidationError, match=message):
        Settings(database_url=url)
    with pytest.raises(ValidationError, match=message):
        Settings(migration_database_url=url)


def test_database_url_gives_the_app_role() -> None:
    """The application role is the user of ADX_DATABASE_URL."""
    settings = Settings(database_url="postgresql+asyncpg://adx_tenant_app:pw@db:5432/adx")
    assert settings.app_role == "adx_tenant_app"


def test_tls_cert_and_key_go_together() -> None:
    """A client certificate without its key (or the reverse) is a configuration error."""
    with pytest.raises(ValidationError, match="go together"):
        Settings(temporal_tls_cert="/tmp/cert.pem")  # noqa: S108


def test_load_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADX_* variables configure the process, codec keys included."""
    monkeypatch.setenv("ADX_ENV", "production")
    monkeypatch.setenv("ADX_CODEC_KEYS", f"old:{KEY1},new:{KEY2}")
    monkeypatch.setenv("ADX_CODEC_ACTIVE_KEY_ID", "new")
    monkeypatch.setenv("ADX_JWT_SECRET", SECRET)
    monkeypatch.setenv("ADX_TASK_QUEUE_PREFIX", "blue-")
    settings = load_settings()
    assert settings.env is Environment.PRODUCTION
    assert settings.codec_keys == {"old": b"1" * 32, "new": b"2" * 32}
    assert settings.codec_active_key_id == "new"
    assert settings.task_queue("tenants") == "blue-tenants"


def test_load_settings_names_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """All field errors come back as one SettingsError naming each ADX_ variable."""
    monkeypatch.setenv("ADX_CODEC_KEYS", "k1:short")
    monkeypatch.setenv("ADX_DATABASE_URL", "mysql://u:p@localhost/adx")
    monkeypatch.setenv("ADX_API_PORT", "70000")
    monkeypatch.setenv("ADX_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    for name in ("ADX_CODEC_KEYS", "ADX_DATABASE_URL", "ADX_API_PORT", "ADX_LOG_FORMAT"):
        assert name in message
    assert info.value.__cause__ is None  # pydantic's long report is not chained in


def test_load_settings_reports_cross_field_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cross-field problem (production without secrets) is reported in the same way."""
    monkeypatch.setenv("ADX_ENV", "production")
    with pytest.raises(SettingsError, match="ADX_CODEC_KEYS, ADX_JWT_SECRET"):
        load_settings()


def test_secrets_do_not_show_in_repr() -> None:
    """Printing settings shows no database password, JWT secret or codec key."""
    settings = Settings(
        database_url="postgresql+asyncpg://adx_app:hunter2-password@db/adx",
        jwt_secret="super-secret-value-that-is-32-chars!",
        codec_keys=f"k1:{KEY1}",
    )
    text = repr(settings) + str(settings)
    assert KEY1 not in text
    assert repr(b"1" * 32) not in text
    assert "hunter2-password" not in text
    assert "super-secret-value" not in text


def test_settings_are_frozen() -> None:
    """Settings cannot change after validation."""
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.api_port = 1  # type: ignore[misc]
