"""The scanners' pure parts: clamd's replies, the EICAR scanner, the settings and the
generated signature database. ClamdScanner against a real clamd is in
tests/integration/scanning/."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from adx_cli.devstack.clamd import (
    EICAR_HDB_NAME,
    EICAR_NDB_NAME,
    ClamdConfig,
    DevScanner,
    socket_path_in,
    write_eicar_test_database,
)
from adx_core.scanning import (
    EICAR_SIGNATURE,
    ClamdScanner,
    EicarScanner,
    ScanError,
    ScanLimitExceededError,
    ScannerUnavailableError,
    eicar_bytes,
    interpret_reply,
    scanner_from_settings,
)
from adx_core.settings import Environment, Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]


async def each(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# -- the EICAR test file ---------------------------------------------------------------------


def test_eicar_bytes_are_the_standard_test_file() -> None:
    data = eicar_bytes()
    assert len(data) == 68
    # The MD5 that every anti-virus vendor lists for the EICAR test file.
    assert hashlib.md5(data, usedforsecurity=False).hexdigest() == (
        "44d88612fea8a8f36de82e1278abb02f"
    )


def test_no_file_in_the_repository_holds_the_eicar_string() -> None:
    needle = eicar_bytes()
    offenders = [
        path
        for top in ("core", "cli", "workers", "api", "operator", "tests", "docs")
        if (REPO_ROOT / top).is_dir()
        for path in (REPO_ROOT / top).rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".md", ".txt", ".json", ".yaml", ".ndb"}
        and needle in path.read_bytes()
    ]
    assert offenders == []


# -- clamd's replies -------------------------------------------------------------------------


def test_ok_is_clean() -> None:
    verdict = interpret_reply("stream: OK", scanned_bytes=12)
    assert (verdict.clean, verdict.signature, verdict.scanned_bytes, verdict.scanner) == (
        True,
        None,
        12,
        "clamd",
    )


def test_found_names_the_signature() -> None:
    verdict = interpret_reply("stream: Win.Test.EICAR_HDB-1 FOUND", scanned_bytes=68)
    assert not verdict.clean
    assert verdict.signature == "Win.Test.EICAR_HDB-1"


@pytest.mark.parametrize(
    "reply",
    [
        "stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND",
        "stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND",
        "stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND",
        "INSTREAM size limit exceeded. ERROR",
    ],
)
def test_a_limit_clamd_hit_is_never_clean(reply: str) -> None:
    with pytest.raises(ScanLimitExceededError):
        interpret_reply(reply, scanned_bytes=1)


@pytest.mark.parametrize(
    "reply",
    ["stream: Can't allocate memory ERROR", "COMMAND READ TIMED OUT ERROR", "Max queue ERROR"],
)
def test_clamds_own_trouble_is_worth_a_retry(reply: str) -> None:
    with pytest.raises(ScannerUnavailableError, match="clamd failed to scan"):
        interpret_reply(reply, scanned_bytes=1)


@pytest.mark.parametrize("reply", ["UNKNOWN COMMAND", "", "PONG", "stream:  FOUND"])
def test_anything_else_is_an_error_that_a_retry_will_not_fix(reply: str) -> None:
    with pytest.raises(ScanError) as caught:
        interpret_reply(reply, scanned_bytes=1)
    assert not isinstance(caught.value, ScannerUnavailableError | ScanLimitExceededError)


def test_clamd_scanner_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="timeout"):
        ClamdScanner(("127.0.0.1", 3310), timeout=0, max_bytes=10)
    with pytest.raises(ValueError, match="max_bytes"):
        ClamdScanner(("127.0.0.1", 3310), timeout=1, max_bytes=0)
    with pytest.raises(ValueError, match="chunk_size"):
        ClamdScanner(("127.0.0.1", 3310), timeout=1, max_bytes=10, chunk_size=0)
    assert ClamdScanner(("::1", 3310), timeout=1, max_bytes=1).address == "[::1]:3310"
    assert ClamdScanner("/run/clamd.sock", timeout=1, max_bytes=1).address == "unix:/run/clamd.sock"


# -- the EICAR scanner -----------------------------------------------------------------------


async def test_eicar_scanner_finds_eicar_and_nothing_else() -> None:
    scanner = EicarScanner(Environment.TEST, max_bytes=1000)
    clean = await scanner.scan(each([b"hello ", b"world"]))
    assert (clean.clean, clean.signature, clean.scanned_bytes, clean.scanner) == (
        True,
        None,
        11,
        "eicar",
    )
    found = await scanner.scan(each([b"prefix ", eicar_bytes(), b" suffix"]))
    assert not found.clean
    assert found.signature == EICAR_SIGNATURE
    assert found.scanned_bytes == 7 + 68 + 7
    assert (await scanner.scan(each([]))).clean


async def test_eicar_scanner_finds_the_string_split_across_chunks() -> None:
    scanner = EicarScanner("development", max_bytes=1000)
    data = b"xyz" + eicar_bytes() + b"abc"
    for cut in range(1, len(data)):
        verdict = await scanner.scan(each([data[:cut], data[cut:]]))
        assert verdict.signature == EICAR_SIGNATURE, cut
    one_byte_at_a_time = await scanner.scan(each(bytes([b]) for b in data))
    assert not one_byte_at_a_time.clean
    # Almost EICAR is not EICAR.
    assert (await scanner.scan(each([eicar_bytes()[:-1], b"-", eicar_bytes()[1:]]))).clean


async def test_eicar_scanner_refuses_more_than_max_bytes() -> None:
    scanner = EicarScanner("test", max_bytes=100)
    assert (await scanner.scan(each([b"a" * 60, b"a" * 40]))).scanned_bytes == 100
    with pytest.raises(ScanLimitExceededError, match="100 bytes"):
        await scanner.scan(each([b"a" * 60, b"a" * 41]))
    # Even with EICAR in the first bytes: a stream over the limit is never judged.
    with pytest.raises(ScanLimitExceededError):
        await scanner.scan(each([eicar_bytes(), b"a" * 100]))


def test_eicar_scanner_warns_that_it_knows_only_eicar(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    EicarScanner("development", max_bytes=10)
    warnings = [r for r in caplog.records if r.name == "adx_core.scanning.eicar"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "knows nothing but the EICAR test file" in str(warnings[0].msg)


def test_eicar_scanner_refuses_production() -> None:
    with pytest.raises(SettingsError, match="production needs clamd"):
        EicarScanner(Environment.PRODUCTION, max_bytes=10)
    with pytest.raises(SettingsError):
        EicarScanner("production", max_bytes=10)


# -- settings --------------------------------------------------------------------------------


def test_scanner_from_settings_picks_the_backend() -> None:
    eicar = scanner_from_settings(Settings(env="test", scanner="eicar", scan_max_bytes=4096))
    assert isinstance(eicar, EicarScanner)
    clamd = scanner_from_settings(
        Settings(env="test", clamd_address="10.1.2.3:3311", scan_timeout_seconds=7)
    )
    assert isinstance(clamd, ClamdScanner)
    assert clamd.endpoint == ("10.1.2.3", 3311)
    unix = scanner_from_settings(Settings(env="test", clamd_address="unix:/run/clamd.ctl"))
    assert isinstance(unix, ClamdScanner)
    assert unix.endpoint == "/run/clamd.ctl"


# -- the generated database and clamd.conf ---------------------------------------------------


def test_the_test_database_holds_eicar_as_body_and_hash_signature(tmp_path: Path) -> None:
    directory = write_eicar_test_database(tmp_path / "db")
    ndb = (directory / "adx-test.ndb").read_text().strip()
    hdb = (directory / "adx-test.hdb").read_text().strip()
    assert ndb == f"{EICAR_NDB_NAME}:0:*:{eicar_bytes().hex()}"
    assert hdb == f"44d88612fea8a8f36de82e1278abb02f:68:{EICAR_HDB_NAME}"


def test_clamd_config_sets_every_limit_and_alerts_on_them(tmp_path: Path) -> None:
    config = ClamdConfig(
        database_dir=tmp_path / "db",
        log_file=tmp_path / "clamd.log",
        temporary_dir=tmp_path / "tmp",
        max_bytes=12345,
        tcp=("127.0.0.1", 3310),
        local_socket=tmp_path / "clamd.sock",
    )
    lines = set(config.write(tmp_path / "clamd.conf").read_text().splitlines())
    assert {
        "Foreground yes",
        f"DatabaseDirectory {tmp_path / 'db'}",
        "StreamMaxLength 12345",
        "MaxFileSize 12345",
        "MaxScanSize 12345",
        "AlertExceedsMax yes",
        "ScanArchive yes",
        "MaxRecursion 16",
        "TCPAddr 127.0.0.1",
        "TCPSocket 3310",
        f"LocalSocket {tmp_path / 'clamd.sock'}",
    } <= lines
    assert not any(line.startswith("User ") for line in lines)
    assert (tmp_path / "tmp").is_dir()
    with pytest.raises(ValueError, match="TCP port"):
        ClamdConfig(tmp_path, tmp_path / "l", tmp_path, 1).render()


def test_a_long_state_dir_gets_a_short_socket_path(tmp_path: Path) -> None:
    assert socket_path_in(tmp_path) == tmp_path / "clamd.sock"
    deep = tmp_path / ("d" * 120)
    assert len(str(socket_path_in(deep))) <= 100
    assert socket_path_in(deep) == socket_path_in(deep)


def test_the_dev_stack_falls_back_to_the_eicar_scanner_without_clamd(tmp_path: Path) -> None:
    scanner = DevScanner(tmp_path, binary=None)
    assert scanner.env() == {"ADX_SCANNER": "eicar"}
    scanner.start(max_bytes=1024)
    scanner.stop()
    with_clamd = DevScanner(tmp_path, binary=Path("/usr/sbin/clamd"))
    assert with_clamd.env() == {
        "ADX_SCANNER": "clamd",
        "ADX_CLAMD_ADDRESS": f"unix:{tmp_path / 'clamd.sock'}",
    }
