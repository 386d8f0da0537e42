"""JSON logs: one object per line, with the correlation id, and no secrets or personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from adx_core import context
from adx_core.auth import Role, mint_token
from adx_core.context import AuthContext
from adx_core.logging import REDACTED, configure_logging, get_logger, redact_text
from adx_core.settings import Settings

SETTINGS = Settings(jwt_secret="logging-test-secret-that-is-long-enough")
TOKEN = mint_token(
    SETTINGS,
    user_id="0b7e9a53-4c1d-4a43-9f0e-2f8c5b1a7d66",
    tenant_id="7d3c1a8e-59f4-4e1b-9a2c-0f5e6d7c8b9a",
    roles=[Role.PLATFORM_ADMIN],
)
OPAQUE = "opaque-session-token-4f1c2b"  # a bearer token that is not a JWT
EMAIL = "ada.lovelace@acme.test"
PASSWORD = "hunter2-correct-horse"
DB_URL = f"postgresql+asyncpg://adx_app:{PASSWORD}@db.internal:5432/adx"
SECRETS = (TOKEN, TOKEN.split(".")[1], TOKEN.split(".")[2], OPAQUE, EMAIL, PASSWORD)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging reconfigured into a buffer for one test, then restored as the suite has it."""
    buffer = io.StringIO()
    configure_logging("DEBUG", "json", stream=buffer)
    try:
        yield buffer
    finally:
        configure_logging("INFO", "json")


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    output = buffer.getvalue()
    assert output, "nothing was logged"
    return [json.loads(line) for line in output.splitlines()]


def _assert_clean(buffer: io.StringIO) -> None:
    output = buffer.getvalue()
    for secret in SECRETS:
        assert secret not in output, f"{secret[:12]}... leaked: {output}"


def test_secrets_in_the_message_are_redacted(stream: io.StringIO) -> None:
    """A JWT, a bearer header, an e-mail and a URL password inside the message are masked."""
    log = get_logger("test.message")
    log.info(f"got token {TOKEN}")
    log.info(f"Authorization: Bearer {OPAQUE}")
    log.info(f"authorization: bearer {TOKEN}")
    log.info(f"user {EMAIL} signed up")
    log.info(f"connecting to {DB_URL}")
    _assert_clean(stream)
    events = [line["event"] for line in _lines(stream)]
    assert events[0] == f"got token {REDACTED}"
    assert events[1] == f"Authorization: Bearer {REDACTED}"
    assert events[3] == "user a***@acme.test signed up"
    assert (
        events[4] == f"connecting to postgresql+asyncpg://adx_app:{REDACTED}@db.internal:5432/adx"
    )


def test_secret_fields_are_redacted(stream: io.StringIO) -> None:
    """Fields named like secrets are masked whatever they hold; other fields are scanned."""
    get_logger("test.fields").info(
        "fields",
        token=TOKEN,
        authorization=f"Bearer {OPAQUE}",
        password=PASSWORD,
        new_password=PASSWORD,
        api_key=OPAQUE,
        database_url=DB_URL,
        email=EMAIL,
        url=DB_URL,
        note=f"sent to {EMAIL}",
        count=3,
    )
    _assert_clean(stream)
    [line] = _lines(stream)
    for key in ("token", "authorization", "password", "new_password", "api_key", "database_url"):
        assert line[key] == REDACTED, key
    assert line["email"] == "a***@acme.test"
    assert line["count"] == 3


def test_nested_secrets_are_redacted(stream: io.StringIO) -> None:
    """Secrets nested in dicts, lists and tuples are masked at any depth."""
    get_logger("test.nested").info(
        "nested",
        request={
            "headers": {"Authorization": f"Bearer {OPAQUE}", "Accept": "application/json"},
            "body": {"admin": {"email": EMAIL, "credentials": {"password": PASSWORD}}},
        },
        items=[TOKEN, {"refresh_token": OPAQUE}],
        pair=("dsn", DB_URL),
        deeper=[[{"Cookie": "session=abc"}, [f"mail {EMAIL}"]]],
    )
    _assert_clean(stream)
    [line] = _lines(stream)
    assert line["request"]["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["request"]["body"]["admin"]["credentials"] == REDACTED
    assert line["items"] == [REDACTED, {"refresh_token": REDACTED}]
    assert line["deeper"][0][0] == {"Cookie": REDACTED}


def test_exceptions_are_redacted(stream: io.StringIO) -> None:
    """A traceback whose message holds a token or password is masked too."""
    log = get_logger("test.exc")
    try:
        raise RuntimeError(f"login failed for {EMAIL} with {TOKEN} on {DB_URL}")
    except RuntimeError:
        log.exception("boom")
    _assert_clean(stream)
    [line] = _lines(stream)
    assert "RuntimeError" in line["exception"]


def test_non_text_values_are_redacted(stream: io.StringIO) -> None:
    """Values the JSON renderer would repr (exceptions, sets, bytes) are redacted as well."""
    get_logger("test.objects").warning(
        "objects",
        error=ValueError(f"bad token {TOKEN}"),
        seen={EMAIL},
        raw=TOKEN.encode(),
    )
    _assert_clean(stream)
    [line] = _lines(stream)
    assert "ValueError" in line["error"]


def test_standard_library_loggers_are_redacted_too(stream: io.StringIO) -> None:
    """Lines from libraries using logging (with %-args) pass the same redaction."""
    library = logging.getLogger("some.library")
    library.warning("request with header Authorization: Bearer %s", OPAQUE)
    library.error("user %s token %s db %s", EMAIL, TOKEN, DB_URL)
    _assert_clean(stream)
    lines = _lines(stream)
    assert [line["logger"] for line in lines] == ["some.library", "some.library"]
    assert all(line["level"] in ("warning", "error") for line in lines)


def test_every_line_is_json_with_the_correlation_id(stream: io.StringIO) -> None:
    """Inside a request context every line, ours and the libraries', carries its ids."""
    ctx = AuthContext("corr-42", user_id="user-1", tenant_id="tenant-1", roles=("member",))
    with context.use(ctx):
        get_logger("test.ctx").info("ours", token=TOKEN)
        get_logger("test.ctx").debug(f"debug {EMAIL}")
        logging.getLogger("lib.ctx").warning("theirs %s", TOKEN)
    get_logger("test.ctx").info("outside")
    lines = _lines(stream)
    assert len(lines) == 4
    for line in lines[:3]:
        assert line["correlation_id"] == "corr-42"
        assert line["tenant_id"] == "tenant-1"
        assert line["user_id"] == "user-1"
        assert {"timestamp", "level", "event"} <= set(line)
    assert "correlation_id" not in lines[3]
    _assert_clean(stream)


def test_redact_text_keeps_ordinary_text() -> None:
    """Text without secrets passes unchanged; ids and URLs without passwords are kept."""
    text = "tenant 7d3c1a8e-59f4-4e1b-9a2c-0f5e6d7c8b9a at https://example.test/x?y=1 ok"
    assert redact_text(text) == text
    assert redact_text("postgresql://adx_app@db/adx") == "postgresql://adx_app@db/adx"


def test_empty_secret_fields_are_left_alone(stream: io.StringIO) -> None:
    """An empty or absent secret is not masked, so logs can show that it is missing."""
    get_logger("test.empty").info("config", jwt_secret=None, password="")
    [line] = _lines(stream)
    assert line["jwt_secret"] is None
    assert line["password"] == ""
