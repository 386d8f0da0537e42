"""clamd (ClamAV's scanning daemon) for the dev stack, and what its tests share with it.

``make dev`` scans uploads with a real clamd when the ``clamd`` binary is installed
(Debian: ``apt-get install clamav-daemon``). Its signatures come from Debian's
/var/lib/clamav when freshclam has filled it; otherwise from a generated database that
only knows the EICAR test file, which is also what the tests use (nothing is downloaded).
Without clamd the workers get ADX_SCANNER=eicar, a scanner in the worker that also only
knows EICAR and says so when it starts.

The generated database holds the EICAR test file twice: as a body signature (.ndb: the
bytes anywhere in a file) and as a hash signature (.hdb: md5 and size of the whole file).
clamd reports signatures from an unsigned database with ``.UNOFFICIAL`` appended.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from adx_core.scanning import eicar_bytes

from .child import ChildServer

# Where Debian's clamd looks for its binary and freshclam keeps the official database.
SYSTEM_CLAMD = Path("/usr/sbin/clamd")
SYSTEM_DATABASE_DIR = Path("/var/lib/clamav")

EICAR_NDB_NAME = "ADX.Test.EICAR-NDB"
EICAR_HDB_NAME = "ADX.Test.EICAR-HDB"
UNOFFICIAL_SUFFIX = ".UNOFFICIAL"
TEST_DATABASE_FILES = ("adx-test.ndb", "adx-test.hdb")

# Unix socket paths are limited to 108 bytes (sun_path) on Linux.
_MAX_SOCKET_PATH = 100
_PING_TIMEOUT = 1.0
_READY_POLL_INTERVAL = 0.02


def find_clamd() -> Path | None:
    """The clamd binary: on PATH, else Debian's (/usr/sbin is not on every user's PATH)."""
    found = shutil.which("clamd")
    if found:
        return Path(found)
    if SYSTEM_CLAMD.is_file() and os.access(SYSTEM_CLAMD, os.X_OK):
        return SYSTEM_CLAMD
    return None


def has_official_database(directory: Path) -> bool:
    """Whether freshclam has put ClamAV's main database into ``directory``."""
    return any((directory / name).is_file() for name in ("main.cvd", "main.cld"))


def write_eicar_test_database(directory: Path) -> Path:
    """Write a signature database that knows only the EICAR test file; return ``directory``."""
    eicar = eicar_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    ndb, hdb = (directory / name for name in TEST_DATABASE_FILES)
    # Name:TargetType:Offset:HexSignature; target 0 is any file, offset * is anywhere.
    ndb.write_text(f"{EICAR_NDB_NAME}:0:*:{eicar.hex()}\n")
    # MD5:FileSize:Name of the whole file.
    hdb.write_text(
        f"{hashlib.md5(eicar, usedforsecurity=False).hexdigest()}:{len(eicar)}:{EICAR_HDB_NAME}\n"
    )
    return directory


@dataclass(frozen=True)
class ClamdConfig:
    """A clamd.conf for a clamd that stays in the foreground, as our child.

    ``max_bytes`` sets StreamMaxLength, MaxFileSize and MaxScanSize together, and
    AlertExceedsMax makes clamd report a file over a limit (``Heuristics.Limits.
    Exceeded.*`` FOUND) instead of passing it as clean after a partial scan.
    """

    database_dir: Path
    log_file: Path
    temporary_dir: Path
    max_bytes: int
    tcp: tuple[str, int] | None = None
    local_socket: Path | None = None
    # ClamAV's own default is 17; an office file inside a zip already takes three levels.
    max_recursion: int = 16

    def render(self) -> str:
        if self.tcp is None and self.local_socket is None:
            raise ValueError("clamd needs a TCP port, a Unix socket, or both")
        lines = [
            "Foreground yes",
            f"DatabaseDirectory {self.database_dir}",
            f"LogFile {self.log_file}",
            "LogTime yes",
            f"TemporaryDirectory {self.temporary_dir}",
            "ScanArchive yes",
            f"MaxRecursion {self.max_recursion}",
            f"StreamMaxLength {self.max_bytes}",
            f"MaxFileSize {self.max_bytes}",
            f"MaxScanSize {self.max_bytes}",
            "AlertExceedsMax yes",
        ]
        if self.tcp is not None:
            host, port = self.tcp
            lines += [f"TCPAddr {host}", f"TCPSocket {port}"]
        if self.local_socket is not None:
            lines += [f"LocalSocket {self.local_socket}", "FixStaleSocket yes"]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        for directory in (path.parent, self.temporary_dir, self.log_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render())
        return path


def socket_path_in(directory: Path) -> Path:
    """A Unix socket path in ``directory``, or in the temp dir when that path is too long."""
    path = directory.absolute() / "clamd.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"adx-clamd-{digest}.sock"


def clamd_answers(endpoint: tuple[str, int] | Path, timeout: float = _PING_TIMEOUT) -> bool:
    """Whether clamd answers PING with PONG right now (blocking; for start-up probes)."""
    family = socket.AF_UNIX if isinstance(endpoint, Path) else socket.AF_INET
    address: str | tuple[str, int] = str(endpoint) if isinstance(endpoint, Path) else endpoint
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"zPING\0")
            return sock.recv(16) == b"PONG\0"
    except OSError:
        return False


def wait_until_answering(
    endpoint: tuple[str, int] | Path, timeout: float, alive: Callable[[], bool]
) -> None:
    """Poll PING until PONG; RuntimeError when the process exits, TimeoutError at the end."""
    deadline = time.monotonic() + timeout
    while not clamd_answers(endpoint):
        if not alive():
            raise RuntimeError("clamd exited before it answered PING")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"clamd did not answer PING within {timeout:g}s")
        time.sleep(_READY_POLL_INTERVAL)


class DevClamd(ChildServer):
    """clamd for ``adx dev``, listening on a Unix socket under the dev state directory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        max_bytes: int,
        binary: Path,
        system_database: Path = SYSTEM_DATABASE_DIR,
    ) -> None:
        self.state_dir = state_dir.absolute()
        super().__init__(self.state_dir / "clamd.out")
        self.max_bytes = max_bytes
        self.binary = binary
        self.socket_path = socket_path_in(self.state_dir)
        self.knows_only_eicar = not has_official_database(system_database)
        self.database_dir = self.state_dir / "db" if self.knows_only_eicar else system_database

    @property
    def address(self) -> str:
        """As ADX_CLAMD_ADDRESS takes it."""
        return f"unix:{self.socket_path}"

    def start(self, timeout: float = 180) -> None:
        """Start clamd and return once it answers PING. With Debian's full database that
        takes tens of seconds (it loads millions of signatures); with the EICAR one, well
        under a second."""
        if self.running:
            return
        if self.knows_only_eicar:
            write_eicar_test_database(self.database_dir)
        config = ClamdConfig(
            database_dir=self.database_dir,
            log_file=self.state_dir / "clamd.log",
            temporary_dir=self.state_dir / "tmp",
            max_bytes=self.max_bytes,
            local_socket=self.socket_path,
        ).write(self.state_dir / "clamd.conf")
        self._launch([str(self.binary), f"--config-file={config}"], env=dict(os.environ))
        try:
            wait_until_answering(self.socket_path, timeout, lambda: not self._exited())
        except (RuntimeError, TimeoutError) as exc:
            tail = self._log_tail()
            self.stop(timeout=5)
            raise RuntimeError(f"{exc}; see {self.state_dir / 'clamd.log'}\n{tail}") from None


class DevScanner:
    """The virus scanner of ``adx dev``: our clamd when it is installed, else the worker's
    EICAR-only scanner."""

    def __init__(self, state_dir: Path, *, binary: Path | None) -> None:
        """``binary`` is clamd's, as ``find_clamd()`` finds it; None runs without clamd."""
        self.state_dir = state_dir
        self.binary = binary
        self.clamd: DevClamd | None = None

    def env(self) -> dict[str, str]:
        """What the worker processes need to reach the scanner."""
        if self.binary is None:
            return {"ADX_SCANNER": "eicar"}
        return {
            "ADX_SCANNER": "clamd",
            "ADX_CLAMD_ADDRESS": f"unix:{socket_path_in(self.state_dir)}",
        }

    def start(self, max_bytes: int) -> None:
        """Start clamd with limits that match ADX_SCAN_MAX_BYTES, or warn that there is none."""
        if self.binary is None:
            _warn(
                "clamd is not installed: uploads are scanned by the EICAR test scanner, which "
                "knows nothing but the EICAR test file (apt-get install clamav-daemon)"
            )
            return
        self.clamd = DevClamd(self.state_dir, max_bytes=max_bytes, binary=self.binary)
        if self.clamd.knows_only_eicar:
            _warn(
                f"{SYSTEM_DATABASE_DIR} holds no ClamAV database: clamd runs with a generated "
                "one that knows nothing but the EICAR test file (run freshclam for real "
                "signatures)"
            )
        self.clamd.start()

    def stop(self) -> None:
        if self.clamd is not None:
            self.clamd.stop()


def _warn(message: str) -> None:
    click.secho(f"adx | warning: {message}", err=True, fg="yellow")
