"""The dev stack's clamd (``adx dev``): started on a Unix socket under the state dir,
with the generated EICAR database when Debian's holds none, and stopped by pid."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from adx_cli.devstack.clamd import DevClamd, DevScanner, find_clamd, has_official_database
from adx_core.scanning import eicar_bytes, scanner_from_settings
from adx_core.settings import Settings
from tests.support.clamd import NDB_SIGNATURE, ClamdServer


async def each(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.fixture
def clamd_binary() -> Path:
    binary = find_clamd()
    if binary is None:
        pytest.skip("clamd is not installed (Debian: apt-get install clamav-daemon)")
    return binary


def test_a_database_dir_counts_as_official_only_with_main(tmp_path: Path) -> None:
    assert not has_official_database(tmp_path)
    (tmp_path / "daily.cld").touch()
    assert not has_official_database(tmp_path)
    (tmp_path / "main.cvd").touch()
    assert has_official_database(tmp_path)


async def test_dev_clamd_scans_over_its_unix_socket(tmp_path: Path, clamd_binary: Path) -> None:
    assert ClamdServer.available()
    clamd = DevClamd(
        tmp_path / "clamd",
        max_bytes=1024 * 1024,
        binary=clamd_binary,
        system_database=tmp_path / "no-system-database",
    )
    assert clamd.knows_only_eicar
    started = time.monotonic()
    clamd.start()
    try:
        print(f"dev clamd start: {time.monotonic() - started:.2f}s")
        pid = clamd.pid
        assert pid is not None
        settings = Settings(env="development", scanner="clamd", clamd_address=clamd.address)
        scanner = scanner_from_settings(settings)
        await scanner.ping()
        assert (await scanner.scan(each(b"fine"))).clean
        assert (await scanner.scan(each(eicar_bytes()))).signature == NDB_SIGNATURE
        config = (tmp_path / "clamd" / "clamd.conf").read_text()
        assert "StreamMaxLength 1048576" in config
        assert f"DatabaseDirectory {tmp_path / 'clamd' / 'db'}" in config
    finally:
        clamd.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not clamd.running


def test_dev_scanner_points_the_workers_at_its_clamd(tmp_path: Path, clamd_binary: Path) -> None:
    scanner = DevScanner(tmp_path, binary=clamd_binary)
    env = scanner.env()
    assert env["ADX_SCANNER"] == "clamd"
    assert Settings(env="development", clamd_address=env["ADX_CLAMD_ADDRESS"]).clamd_endpoint == (
        str(tmp_path / "clamd.sock")
    )
