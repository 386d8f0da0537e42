"""A real clamd (Debian's clamav-daemon) on loopback, with a signature database we generate.

No ClamAV database can be downloaded here, so the server gets one that knows only the
EICAR test file, as a body signature (.ndb) and a hash signature (.hdb); see
``adx_cli.devstack.clamd``, which writes the same database for ``make dev``. With that
tiny database clamd answers PING about 0.1 s after it is started. It listens on a free
TCP port on 127.0.0.1 and, unless told otherwise, on a Unix socket in its workdir too.
It runs as root without a ``User`` line (clamd only switches user when given one) and is
stopped, or killed, by its own pid.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Collection
from pathlib import Path

from adx_cli.devstack.clamd import (
    EICAR_HDB_NAME,
    EICAR_NDB_NAME,
    TEST_DATABASE_FILES,
    UNOFFICIAL_SUFFIX,
    ClamdConfig,
    find_clamd,
    socket_path_in,
    wait_until_answering,
    write_eicar_test_database,
)
from tests.support.loopback import LoopbackServer

# The names clamd prints for the EICAR test file: unsigned databases get a suffix.
NDB_SIGNATURE = EICAR_NDB_NAME + UNOFFICIAL_SUFFIX
HDB_SIGNATURE = EICAR_HDB_NAME + UNOFFICIAL_SUFFIX

DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class ClamdServer(LoopbackServer):
    """clamd with StreamMaxLength, MaxFileSize and MaxScanSize all set to ``max_bytes``."""

    def __init__(
        self,
        workdir: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_recursion: int = 8,
        unix_socket: bool = True,
        database_files: Collection[str] = TEST_DATABASE_FILES,
    ) -> None:
        super().__init__(workdir)
        self.max_bytes = max_bytes
        self.max_recursion = max_recursion
        self.socket_path: Path | None = socket_path_in(workdir) if unix_socket else None
        unknown = set(database_files) - set(TEST_DATABASE_FILES)
        if unknown:
            raise ValueError(f"no such test database file: {sorted(unknown)}")
        self._database_files = frozenset(database_files)

    @staticmethod
    def available() -> bool:
        return find_clamd() is not None

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def address(self) -> str:
        """ADX_CLAMD_ADDRESS for the TCP socket."""
        return f"{self.host}:{self.port}"

    @property
    def unix_address(self) -> str:
        """ADX_CLAMD_ADDRESS for the Unix socket."""
        if self.socket_path is None:
            raise RuntimeError("this clamd was started without a Unix socket")
        return f"unix:{self.socket_path}"

    def env(self) -> dict[str, str]:
        return {"ADX_SCANNER": "clamd", "ADX_CLAMD_ADDRESS": self.address}

    def start(self, timeout: float = 30.0) -> None:
        binary = find_clamd()
        if binary is None:
            raise RuntimeError("clamd is not installed (Debian: apt-get install clamav-daemon)")
        config = self._write_config()
        self._spawn([str(binary), f"--config-file={config}"], "clamd.out")
        try:
            wait_until_answering(self.endpoint, timeout, alive=self._alive)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}; see {self._workdir / 'clamd.log'}") from None

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port and socket."""
        self.stop()
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash: clamd gets no chance to answer or close anything."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()
        self._process = None

    def _write_config(self) -> Path:
        database_dir = write_eicar_test_database(self._workdir / "db")
        for name in set(TEST_DATABASE_FILES) - self._database_files:
            (database_dir / name).unlink()
        return ClamdConfig(
            database_dir=database_dir,
            log_file=self._workdir / "clamd.log",
            temporary_dir=self._workdir / "tmp",
            max_bytes=self.max_bytes,
            max_recursion=self.max_recursion,
            tcp=self.endpoint,
            local_socket=self.socket_path,
        ).write(self._workdir / "clamd.conf")


# Starts a clamd of a test's own (``ClamdServer`` keyword arguments); see tests/conftest.py.
ClamdFactory = Callable[..., ClamdServer]
