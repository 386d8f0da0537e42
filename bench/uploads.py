"""Upload benchmarks (issue 5): a 1 GiB upload end to end, and 200 small uploads at once.

Against the bench's own stack (bench.stack): the API and the tenants worker as processes
of their own, plus ``adx worker files`` (``python -m adx_cli worker files``) configured to
scan with a real clamd (Debian's clamav-daemon) that this module starts on a Unix socket
with the tests' generated signature database, which knows only the EICAR test file (see
tests/support/clamd.py). clamd's StreamMaxLength, MaxFileSize and MaxScanSize, and
ADX_SCAN_MAX_BYTES, are set to their largest value, just under 4 GiB. Files are stored on
the local provider, in the bench's working directory. The tenant is on the enterprise
plan (files up to 5 GiB), seeded straight through the repositories
(tests/support/tenancy.py) with one member who uploads.

Each part records its own failure and the next part still runs, so a broken step shows
in the figures as what it is.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable

import aiohttp
from tests.support.clamd import ClamdServer
from tests.support.processes import settings_env

from adx_cli.devstack.clamd import find_clamd
from adx_core.auth import Role
from adx_core.temporal.client import connect
from bench import callers, load, parts, stack, uploads_large, uploads_small
from bench.uploads_client import UploadApi, describe_failure, small_body
from bench.uploads_results import GIB, MIB, SMALL_UPLOADS, UploadResults

LARGE_SIZE = GIB
# clamd alone is timed on a quarter of the size: its cost grows with the bytes, and the
# whole phase stays within its three minutes.
DIRECT_SCAN_SIZE = 256 * MIB
SMALL_SIZE = 32 * 1024
SIDE_BY_SIDE_ROUNDS = 30
WARMUP_UPLOADS = 3
WAIT_SECONDS = 30
# clamd takes sizes up to 4 GiB - 1 (and so does ADX_SCAN_MAX_BYTES).
SCAN_MAX_BYTES = 4 * GIB - 1
# Bounds each write to clamd and the wait for its verdict after the last byte; clamd
# scans a stream only once it has all of it, and 1 GiB takes it tens of seconds here.
SCAN_TIMEOUT_SECONDS = 120.0


def scanner_env(clamd: ClamdServer) -> dict[str, str]:
    return {
        "ADX_SCANNER": "clamd",
        "ADX_CLAMD_ADDRESS": clamd.unix_address,
        "ADX_SCAN_MAX_BYTES": str(SCAN_MAX_BYTES),
        "ADX_SCAN_TIMEOUT_SECONDS": str(SCAN_TIMEOUT_SECONDS),
    }


def clamd_version() -> str:
    binary = find_clamd()
    if binary is None:
        return "clamd not installed"
    done = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip() or done.stderr.strip()


async def measure(st: stack.Stack, results: UploadResults) -> None:
    results.clamd = clamd_version()
    results.scan_max_bytes = SCAN_MAX_BYTES
    results.scan_timeout_seconds = SCAN_TIMEOUT_SECONDS
    clamd = ClamdServer(st.workdir / "clamd", max_bytes=SCAN_MAX_BYTES)
    began = time.monotonic()
    clamd.start()
    results.seconds["clamd start"] = time.monotonic() - began
    files_worker: stack.Child | None = None
    try:
        began = time.monotonic()
        # The API refuses uploads above the scan limit, so it needs the same one.
        await stack.start_roles(st, scanner_env(clamd))
        env = {**settings_env(st.settings), **scanner_env(clamd)}
        files_worker = await stack.start_worker(st, "files", env)
        results.seconds["api and workers start"] = time.monotonic() - began
        await _parts(st, clamd, files_worker, results)
    finally:
        if files_worker is not None:
            results.exit_codes["files worker"] = files_worker.stop()
        results.exit_codes.update(stack.stop_roles(st))
        clamd.stop()


async def _parts(
    st: stack.Stack, clamd: ClamdServer, files_worker: stack.Child, results: UploadResults
) -> None:
    client = await connect(st.settings, identity="adx-bench-uploads")
    _, member_token = await callers.seeded_member(st.settings, "uploader", Role.MEMBER)
    admin_token = callers.platform_admin_token(st.settings)
    assert clamd.pid is not None
    assert st.temporal.pid is not None
    assert st.postgres.pid is not None
    api_pid = st.child("api").pid
    rss_of = {"api": api_pid, "files worker": files_worker.pid, "bench client": os.getpid()}
    cpu_of = {
        "api": api_pid,
        "files worker": files_worker.pid,
        "clamd": clamd.pid,
        "temporal": st.temporal.pid,
        "postgres+": st.postgres.pid,
        "bench client": os.getpid(),
    }
    logs = [st.child("api"), files_worker]
    connector = aiohttp.TCPConnector(limit=uploads_small.IN_FLIGHT + 10)
    timeout = aiohttp.ClientTimeout(total=load.REQUEST_TIMEOUT * 6)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        files = UploadApi(session, st.api_url, member_token)
        tenants = load.Api(session, st.api_url, admin_token, run_tag=secrets.token_hex(3))

        async def part(name: str, run: Callable[[], Awaitable[None]]) -> bool:
            print(f"uploads: {name}", flush=True)
            began = time.monotonic()
            try:
                await run()
            except Exception as exc:  # reported; the next part still runs
                _failed(results, name, exc, logs)
                return False
            finally:
                results.seconds[name] = time.monotonic() - began
            return True

        if not await part("warm-up", lambda: _warm_up(files, tenants)):
            return
        storage_dir = st.settings.storage_root / "bench-plain"

        async def plain_before() -> None:
            results.plain += await uploads_large.plain(storage_dir, LARGE_SIZE, "before")

        async def large() -> None:
            results.large = await uploads_large.large_upload(
                files, client, LARGE_SIZE, rss_of=rss_of, cpu_of=cpu_of
            )

        async def plain_after() -> None:
            results.plain += await uploads_large.plain(storage_dir, LARGE_SIZE, "after")

        async def direct() -> None:
            results.direct_scan = await uploads_large.direct_scan(
                str(clamd.socket_path),
                DIRECT_SCAN_SIZE,
                SCAN_MAX_BYTES,
                SCAN_TIMEOUT_SECONDS,
                clamd.pid or 0,
            )

        async def side_by_side() -> None:
            series, done, ends = await uploads_small.side_by_side(
                files, tenants, client, SMALL_SIZE, SIDE_BY_SIDE_ROUNDS
            )
            results.sequential, results.sequential_rounds = series, done
            if set(ends) - {"succeeded"}:
                results.notes.append(f"Side by side, the uploads ended: {dict(ends)}.")

        async def burst() -> None:
            results.burst = await uploads_small.burst(
                files,
                tenants,
                client,
                count=SMALL_UPLOADS,
                size=SMALL_SIZE,
                rss_of=rss_of,
                cpu_of=cpu_of,
            )

        await part("plain 1 GiB, before", plain_before)
        await part("1 GiB upload", large)
        if results.large is not None and results.large.error:
            _failed(results, "1 GiB upload", RuntimeError(results.large.error), logs)
        await part("plain 1 GiB, after", plain_after)
        await part(f"clamd alone, {DIRECT_SCAN_SIZE // MIB} MiB", direct)
        await part("small uploads side by side", side_by_side)
        await part(f"{SMALL_UPLOADS} small uploads at once", burst)


async def _warm_up(files: UploadApi, tenants: load.Api) -> None:
    """Pools, imports on first use, the first workflow and activity tasks; not counted.
    Fails the phase if an upload does not get through."""
    for index in range(WARMUP_UPLOADS):
        status, payload = await files.upload(
            small_body(SMALL_SIZE), SMALL_SIZE, f"warm-{index}.bin", wait=WAIT_SECONDS
        )
        if status != 200 or payload.get("status") != "succeeded":
            raise RuntimeError(
                f"a warm-up upload did not succeed: {describe_failure(status, payload)}"
            )
    status, payload = await tenants.create_tenant(tenants.slug("up-warm", 0), wait=WAIT_SECONDS)
    if status != 200 or payload.get("status") != "succeeded":
        raise RuntimeError(
            f"the warm-up tenant was not provisioned: {describe_failure(status, payload)}"
        )


def _failed(results: UploadResults, name: str, exc: BaseException, logs: list[stack.Child]) -> None:
    # Uploads report warnings too: a refused upload logs one before anything fails.
    parts.failed(results, name, exc, logs, (*parts.ERROR_MARKS, '"level": "warning"'))
