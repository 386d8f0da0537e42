"""The dev-stack runners against real processes: PostgreSQL, the Temporal dev server and
supervised children. Each test checks by pid that nothing is left running."""

from __future__ import annotations

import asyncio
import io
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from adx_cli.devstack.net import free_port, is_http_ready, is_tcp_open
from adx_cli.devstack.postgres import SYSTEM_USER, EmbeddedPostgres, PostgresError
from adx_cli.devstack.supervisor import Supervisor
from adx_cli.devstack.temporal import TemporalDevServer

CLI_DIR = Path(__file__).resolve().parents[2] / "cli"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """The pids still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if not _gone(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _process_tree(pid: int) -> list[int]:
    return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]


def _python(script: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script)]


@pytest.fixture
def stopped_at_the_end() -> Iterator[list[EmbeddedPostgres | TemporalDevServer]]:
    """Servers a failing test might leave running are stopped anyway."""
    servers: list[EmbeddedPostgres | TemporalDevServer] = []
    yield servers
    for server in servers:
        server.stop()


# -- PostgreSQL ---------------------------------------------------------------------------


async def test_postgres_keeps_its_data_across_restarts_and_leaves_no_process(
    tmp_path: Path, stopped_at_the_end: list[EmbeddedPostgres | TemporalDevServer]
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", free_port(), password="s3cret pw", fast=True)
    stopped_at_the_end.append(pg)

    started = time.monotonic()
    pg.start()
    print(f"postgres cold start (initdb included): {time.monotonic() - started:.2f}s")
    assert pg.running
    assert pg.pid is not None
    if os.geteuid() == 0:
        # PostgreSQL refuses root, so it runs as the unprivileged system user.
        assert psutil.Process(pg.pid).username() == SYSTEM_USER
        assert pg.data_dir.stat().st_uid == pwd.getpwnam(SYSTEM_USER).pw_uid
    assert pg.create_database("adx") is True
    assert pg.create_database("adx") is False

    conn = await asyncpg.connect(pg.dsn("adx"))
    try:
        await conn.execute("CREATE TABLE tenants (slug text PRIMARY KEY)")
        await conn.execute("INSERT INTO tenants VALUES ('acme')")
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg.dsn("adx", password="wrong"))

    first_run = _process_tree(pg.pid)
    pg.stop()
    assert _wait_gone(first_run, timeout=0) == []
    assert not pg.running
    assert pg.pid is None
    pg.stop()

    started = time.monotonic()
    pg.start()
    print(f"postgres warm start: {time.monotonic() - started:.2f}s")
    assert pg.pid is not None
    conn = await asyncpg.connect(pg.dsn("adx"))
    try:
        assert await conn.fetchval("SELECT slug FROM tenants") == "acme"
    finally:
        await conn.close()
    second_run = _process_tree(pg.pid)
    pg.stop()
    assert _wait_gone(second_run, timeout=0) == []


def test_postgres_dies_with_its_parent_and_its_data_dir_restarts(
    tmp_path: Path, stopped_at_the_end: list[EmbeddedPostgres | TemporalDevServer]
) -> None:
    data_dir, port = tmp_path / "pg", free_port()
    parent = subprocess.Popen(
        _python(
            f"""
            import sys, time
            from pathlib import Path
            sys.path.insert(0, {str(CLI_DIR)!r})
            from adx_cli.devstack.postgres import EmbeddedPostgres
            pg = EmbeddedPostgres(Path({str(data_dir)!r}), {port}, fast=True)
            pg.start()
            print(pg.pid, flush=True)
            time.sleep(120)
            """
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    postmaster = int(parent.stdout.readline())
    server_tree = _process_tree(postmaster)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert _wait_gone(server_tree) == []

    pg = EmbeddedPostgres(data_dir, port, fast=True)
    stopped_at_the_end.append(pg)
    pg.start()
    assert pg.psql("SELECT 1").strip() == "1"
    pg.stop()


def test_postgres_start_failures_are_clear(
    tmp_path: Path, stopped_at_the_end: list[EmbeddedPostgres | TemporalDevServer]
) -> None:
    bad = EmbeddedPostgres(tmp_path / "pg", free_port(), fast=True, settings={"work_mem": "lots"})
    stopped_at_the_end.append(bad)
    with pytest.raises(PostgresError, match="exited during start") as failure:
        bad.start()
    assert "work_mem" in str(failure.value)  # the tail of the server log
    assert not bad.running

    good = EmbeddedPostgres(tmp_path / "pg", bad.port, fast=True)
    stopped_at_the_end.append(good)
    good.start()
    with pytest.raises(PostgresError, match="already in use"):
        EmbeddedPostgres(tmp_path / "other", good.port, fast=True).start()
    good.stop()


# -- Temporal -----------------------------------------------------------------------------


async def test_temporal_keeps_workflows_and_adds_search_attributes_across_restarts(
    tmp_path: Path, stopped_at_the_end: list[EmbeddedPostgres | TemporalDevServer]
) -> None:
    db_file, port, ui_port = tmp_path / "temporal.db", free_port(), free_port()
    first = TemporalDevServer(
        db_file, port=port, ui_port=ui_port, search_attributes={"TenantId": "Keyword"}
    )
    stopped_at_the_end.append(first)
    started = time.monotonic()
    first.start()
    print(f"temporal cold start: {time.monotonic() - started:.2f}s")
    assert first.pid is not None
    assert is_tcp_open("127.0.0.1", port)
    assert first.ui_url is not None
    assert is_http_ready(first.ui_url)
    client = await Client.connect(first.address)
    await client.start_workflow("devstack_probe", id="probe", task_queue="nobody-polls")
    first_tree = _process_tree(first.pid)
    first.stop()
    assert _wait_gone(first_tree, timeout=0) == []
    first.stop()

    # A later run declares one more attribute: the CLI alone would not add it.
    second = TemporalDevServer(
        db_file,
        port=port,
        ui_port=ui_port,
        headless=True,
        search_attributes={"TenantId": "Keyword", "Step": "Keyword"},
    )
    stopped_at_the_end.append(second)
    started = time.monotonic()
    second.start()
    print(f"temporal warm start: {time.monotonic() - started:.2f}s")
    assert second.pid is not None
    client = await Client.connect(second.address)
    description = await client.get_workflow_handle("probe").describe()
    assert description.raw_description.workflow_execution_info.status == (
        WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
    )
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert {"TenantId", "Step"} <= set(listed.custom_attributes)
    second_tree = _process_tree(second.pid)
    second.stop()
    assert _wait_gone(second_tree, timeout=0) == []


def test_temporal_dies_with_its_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        _python(
            f"""
            import sys, time
            sys.path.insert(0, {str(CLI_DIR)!r})
            from adx_cli.devstack.net import free_port
            from adx_cli.devstack.temporal import TemporalDevServer
            server = TemporalDevServer(port=free_port(), headless=True)
            server.start()
            print(server.pid, flush=True)
            time.sleep(120)
            """
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    server = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert _wait_gone([server]) == []


# -- Supervisor ---------------------------------------------------------------------------

_SLEEPER = """
    import os, time
    print("pid", os.getpid(), flush=True)
    time.sleep(120)
"""


def _supervisor_script(tmp_path: Path) -> Path:
    script = tmp_path / "supervise.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(CLI_DIR)!r})
            from adx_cli.devstack.supervisor import Supervisor
            sleeper = {textwrap.dedent(_SLEEPER)!r}
            supervisor = Supervisor(stop_timeout=5)
            supervisor.add("first", [sys.executable, "-c", sleeper])
            supervisor.add("second", [sys.executable, "-c", sleeper], ready=lambda: True)
            sys.exit(supervisor.run_sync())
            """
        )
    )
    return script


def _start_supervised(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, str(_supervisor_script(tmp_path))], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    pids: dict[str, int] = {}
    while len(pids) < 2:
        line = proc.stdout.readline()
        assert line, "the supervisor ended before both children reported"
        name, _, text = (part.strip() for part in line.partition("|"))
        if text.startswith("pid "):
            pids[name] = int(text.split()[1])
    return proc, pids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_supervisor_stops_all_children_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    proc, pids = _start_supervised(tmp_path)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, output
    assert _wait_gone(list(pids.values()), timeout=0) == []
    # Reverse order: the child started last is stopped first.
    assert output.index("second stopped") < output.index("first stopped")


def test_supervised_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    proc, pids = _start_supervised(tmp_path)
    proc.kill()
    proc.communicate(timeout=15)
    assert _wait_gone(list(pids.values())) == []


async def test_supervisor_stops_the_rest_when_a_child_dies() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out, stop_timeout=5, handle_signals=False)
    supervisor.add("sleeper", _python(_SLEEPER), ready=lambda: True)
    supervisor.add("crasher", _python("import time, sys; time.sleep(0.3); sys.exit(3)"))
    assert await supervisor.run() == 3
    assert "crasher exited with code 3" in out.getvalue()
    assert _wait_gone(list(supervisor.pids.values()), timeout=0) == []


async def test_supervisor_gives_up_on_a_child_that_never_gets_ready() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out, stop_timeout=5, handle_signals=False)
    supervisor.add("slow", _python(_SLEEPER), ready=lambda: False, ready_timeout=0.5)
    supervisor.add("never", _python(_SLEEPER))
    assert await supervisor.run() == 1
    assert "slow was not ready" in out.getvalue()
    assert set(supervisor.pids) == {"slow"}
    assert _wait_gone(list(supervisor.pids.values()), timeout=0) == []


async def test_supervisor_stops_its_children_when_cancelled() -> None:
    supervisor = Supervisor(out=io.StringIO(), stop_timeout=5, handle_signals=False)
    asked_if_ready = threading.Event()

    def ready() -> bool:
        asked_if_ready.set()
        return True

    supervisor.add("sleeper", _python(_SLEEPER), ready=ready)
    run = asyncio.create_task(supervisor.run())
    assert await asyncio.to_thread(asked_if_ready.wait, 10)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert _wait_gone(list(supervisor.pids.values()), timeout=0) == []


async def test_supervisor_reports_a_command_that_cannot_start() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out, handle_signals=False)
    supervisor.add("ghost", ["/nonexistent/adx-binary"])
    assert await supervisor.run() == 1
    assert "ghost could not start" in out.getvalue()
