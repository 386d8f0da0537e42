"""clamd for the scanning tests: one shared server, and a factory for a test's own.

``clamd_server`` is written to move as is into tests/conftest.py: it needs only
``session_dir`` from there. A test that stops, kills, restarts or reconfigures clamd
starts its own through ``clamd_factory``, so the shared server is never disturbed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clamd import ClamdServer

ClamdFactory = Callable[..., ClamdServer]


def _require_clamd() -> None:
    if ClamdServer.available():
        return
    reason = "clamd is not installed (Debian: apt-get install clamav-daemon)"
    if os.environ.get("CI"):
        # .ci/run installs clamav-daemon: a missing clamd there is a broken set-up, not a skip.
        pytest.fail(f"{reason}, but CI must run the scanning tests")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def clamd_server(session_dir: Path) -> Iterator[ClamdServer]:
    """A real clamd on loopback (TCP and a Unix socket) that knows the EICAR test file."""
    _require_clamd()
    server = ClamdServer(session_dir / "clamd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clamd_factory(tmp_path: Path) -> Iterator[ClamdFactory]:
    """Start a clamd of this test's own (``ClamdServer`` keyword arguments); all are
    stopped at the end of the test, whatever the test did to them."""
    _require_clamd()
    servers: list[ClamdServer] = []

    def start(**options: Any) -> ClamdServer:
        server = ClamdServer(tmp_path / f"clamd-{len(servers)}", **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
