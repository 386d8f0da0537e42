"""The pure parts of the dev-stack runners: command lines, URLs, probes and helpers."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from adx_cli.devstack.net import (
    free_port,
    is_http_ready,
    is_tcp_open,
    url_host,
    wait_for_http,
    wait_for_tcp,
)
from adx_cli.devstack.postgres import EmbeddedPostgres
from adx_cli.devstack.process import (
    log_size,
    parent_death_signal_preexec,
    read_log_tail,
    stop_process,
)
from adx_cli.devstack.supervisor import Supervisor
from adx_cli.devstack.temporal import DEFAULT_DYNAMIC_CONFIG, TemporalDevServer

# -- EmbeddedPostgres -------------------------------------------------------------------


def _values_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_initdb_argv_trusts_connections_without_a_password(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5555)
    argv = pg.initdb_argv()
    assert Path(argv[0]).name == "initdb"
    assert _values_after(argv, "-D") == [str(tmp_path / "pg")]
    assert _values_after(argv, "-U") == ["postgres"]
    assert {"--auth=trust", "--encoding=UTF8", "--locale=C"} <= set(argv)
    assert "--pwfile" not in argv
    assert "--no-sync" not in argv


def test_initdb_argv_requires_scram_with_a_password(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5555, superuser="root_db", password="pw", fast=True)
    argv = pg.initdb_argv(tmp_path / "pwfile")
    assert "--auth=scram-sha-256" in argv
    assert _values_after(argv, "--pwfile") == [str(tmp_path / "pwfile")]
    assert _values_after(argv, "-U") == ["root_db"]
    assert "--no-sync" in argv


def test_server_argv_is_durable_by_default(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 6543, host="127.0.0.2")
    argv = pg.server_argv()
    assert Path(argv[0]).name == "postgres"
    assert _values_after(argv, "-p") == ["6543"]
    assert _values_after(argv, "-h") == ["127.0.0.2"]
    assert _values_after(argv, "-k") == [str(tmp_path / "pg")]
    settings = _values_after(argv, "-c")
    assert "max_connections=200" in settings
    assert not any(s.startswith("fsync") for s in settings)


def test_server_argv_fast_mode_and_extra_settings(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 6543, fast=True, settings={"max_connections": "50"})
    settings = _values_after(pg.server_argv(), "-c")
    assert {"fsync=off", "synchronous_commit=off", "max_connections=50"} <= set(settings)
    assert "max_connections=200" not in settings


def test_socket_dir_moves_out_of_a_too_long_data_dir(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 120)
    pg = EmbeddedPostgres(long_dir, 5432)
    assert pg.socket_dir != long_dir
    assert len(str(pg.socket_dir / ".s.PGSQL.5432.lock")) < 100
    assert pg.socket_dir == EmbeddedPostgres(long_dir, 5432).socket_dir


def test_dsn_defaults_to_the_superuser(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5433)
    assert pg.dsn() == "postgresql://postgres@127.0.0.1:5433/postgres"


def test_dsn_quotes_credentials_and_names_the_driver(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5433, password="p@ss:w/rd")
    assert (
        pg.dsn("adx", driver="postgresql+asyncpg")
        == "postgresql+asyncpg://postgres:p%40ss%3Aw%2Frd@127.0.0.1:5433/adx"
    )


def test_dsn_for_another_user_never_carries_the_superuser_password(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5433, password="superpw")
    assert pg.dsn("adx", user="app") == "postgresql://app@127.0.0.1:5433/adx"
    assert pg.dsn("adx", user="app", password="apppw") == (
        "postgresql://app:apppw@127.0.0.1:5433/adx"
    )


def test_dsn_brackets_ipv6_hosts(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5433, host="::1")
    assert pg.dsn() == "postgresql://postgres@[::1]:5433/postgres"


def test_a_server_never_started_is_not_running_and_stops_quietly(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5433)
    assert not pg.running
    assert pg.pid is None
    pg.stop()
    pg.stop()


def test_default_log_sits_next_to_the_data_dir(tmp_path: Path) -> None:
    assert EmbeddedPostgres(tmp_path / "pg", 1).log_path == tmp_path / "pg.log"


# -- TemporalDevServer ------------------------------------------------------------------


def test_temporal_argv_with_ui_persistence_and_search_attributes(tmp_path: Path) -> None:
    server = TemporalDevServer(
        tmp_path / "temporal.db",
        port=7300,
        ui_port=8300,
        search_attributes={"TenantId": "Keyword", "Percent": "Int"},
        binary=Path("/opt/temporal"),
    )
    argv = server.server_argv()
    assert argv[:3] == ["/opt/temporal", "server", "start-dev"]
    assert _values_after(argv, "--port") == ["7300"]
    assert _values_after(argv, "--ui-port") == ["8300"]
    assert _values_after(argv, "--ip") == ["127.0.0.1"]
    assert _values_after(argv, "--db-filename") == [str(tmp_path / "temporal.db")]
    assert _values_after(argv, "--search-attribute") == ["TenantId=Keyword", "Percent=Int"]
    assert "--headless" not in argv
    assert "--namespace" not in argv
    dynamic = dict(v.split("=", 1) for v in _values_after(argv, "--dynamic-config-value"))
    assert {k: json.loads(v) for k, v in dynamic.items()} == dict(DEFAULT_DYNAMIC_CONFIG)


def test_temporal_argv_headless_in_memory_with_namespace_and_extras() -> None:
    server = TemporalDevServer(
        port=7301,
        namespace="adx",
        headless=True,
        extra_args=["--http-port", "7302"],
        dynamic_config={"limit.maxIDLength": 255},
        metrics_port=9300,
        binary=Path("temporal"),
    )
    argv = server.server_argv()
    assert "--headless" in argv
    assert "--ui-port" not in argv
    assert "--db-filename" not in argv
    assert _values_after(argv, "--namespace") == ["adx"]
    assert _values_after(argv, "--metrics-port") == ["9300"]
    assert "limit.maxIDLength=255" in _values_after(argv, "--dynamic-config-value")
    assert argv[-2:] == ["--http-port", "7302"]
    assert server.ui_url is None
    assert server.address == "127.0.0.1:7301"


def test_temporal_search_attribute_registration_argv() -> None:
    server = TemporalDevServer(
        port=7303,
        namespace="adx",
        search_attributes={"TenantId": "Keyword", "Step": "Keyword"},
        binary=Path("temporal"),
    )
    argv = server.search_attribute_argv()
    assert argv[:4] == ["temporal", "operator", "search-attribute", "create"]
    assert _values_after(argv, "--address") == ["127.0.0.1:7303"]
    assert _values_after(argv, "--namespace") == ["adx"]
    assert _values_after(argv, "--name") == ["TenantId", "Step"]
    assert _values_after(argv, "--type") == ["Keyword", "Keyword"]


@pytest.mark.parametrize(
    "attributes", [{"TenantId": "String"}, {"tenant-id": "Keyword"}], ids=["type", "name"]
)
def test_temporal_rejects_bad_search_attributes(attributes: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="search attribute"):
        TemporalDevServer(search_attributes=attributes)


def test_temporal_binary_is_found_in_the_venv() -> None:
    binary = TemporalDevServer().binary
    assert binary.name == "temporal"
    assert binary.is_file()


def test_temporal_default_log_path(tmp_path: Path) -> None:
    assert TemporalDevServer(tmp_path / "t.db").log_path == tmp_path / "t.db.log"
    assert TemporalDevServer(port=7399).log_path.name == "adx-temporal-7399.log"


# -- net --------------------------------------------------------------------------------


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_tcp_probe(listening_port: int) -> None:
    assert is_tcp_open("127.0.0.1", listening_port)
    wait_for_tcp("127.0.0.1", listening_port, timeout=1)
    assert not is_tcp_open("127.0.0.1", free_port())


def test_wait_for_tcp_times_out() -> None:
    with pytest.raises(TimeoutError):
        wait_for_tcp("127.0.0.1", free_port(), timeout=0.2)


def test_wait_for_tcp_gives_up_when_the_process_died() -> None:
    with pytest.raises(RuntimeError, match="exited"):
        wait_for_tcp("127.0.0.1", free_port(), timeout=5, alive=lambda: False)


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_probe_counts_client_errors_as_up_and_5xx_as_not_ready(status_server: str) -> None:
    assert is_http_ready(f"{status_server}/200")
    assert is_http_ready(f"{status_server}/404")
    assert not is_http_ready(f"{status_server}/503")
    assert not is_http_ready(f"http://127.0.0.1:{free_port()}/")
    wait_for_http(f"{status_server}/204", timeout=1)
    with pytest.raises(TimeoutError):
        wait_for_http(f"{status_server}/503", timeout=0.2)


def test_url_host() -> None:
    assert url_host("127.0.0.1") == "127.0.0.1"
    assert url_host("::1") == "[::1]"
    assert url_host("[::1]") == "[::1]"


# -- process ----------------------------------------------------------------------------


def test_read_log_tail_from_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("old run\n")
    offset = log_size(log)
    log.write_text("old run\n" + "".join(f"line {i}\n" for i in range(50)))
    tail = read_log_tail(log, offset, max_lines=3)
    assert tail == "line 47\nline 48\nline 49"
    assert "old run" not in read_log_tail(log, offset)
    assert "unreadable" in read_log_tail(tmp_path / "missing.log")
    assert log_size(tmp_path / "missing.log") == 0


def test_stop_process_escalates_to_sigkill() -> None:
    ignores_sigterm = "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", ignores_sigterm + "print('ok', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ok\n"
    assert stop_process(proc, signal.SIGTERM, timeout=0.3) == -signal.SIGKILL
    assert stop_process(proc, signal.SIGTERM, timeout=0.3) == -signal.SIGKILL
    proc.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_parent_death_signal_preexec_runs_in_a_child() -> None:
    preexec = parent_death_signal_preexec(signal.SIGTERM)
    assert preexec is not None
    result = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=preexec, check=False)
    assert result.returncode == 0


# -- supervisor -------------------------------------------------------------------------


def test_supervisor_refuses_duplicate_names() -> None:
    supervisor = Supervisor()
    supervisor.add("api", ["true"])
    with pytest.raises(ValueError, match="already"):
        supervisor.add("api", ["true"])


def test_supervisor_stop_requested_before_run_starts_nothing() -> None:
    supervisor = Supervisor(handle_signals=False)
    supervisor.add("never", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor.request_stop()
    assert supervisor.run_sync() == 0
    assert supervisor.pids == {}
