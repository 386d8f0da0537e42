"""``python -m bench``: start the stack, run the phases, print the table, write the page."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from temporalio.client import Client

from adx_core.auth import Role, mint_token
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.temporal.client import connect
from bench import (
    api_bench,
    api_report,
    load,
    operator_bench,
    operator_report,
    report,
    stack,
    storage,
    storage_report,
    uploads,
    uploads_report,
)
from bench.api_results import ApiResults
from bench.breakdown import breakdown
from bench.operator_bench import OperatorResults
from bench.procstat import Meter, Span
from bench.uploads_results import UploadResults

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

ROUNDS = {"sequential": 200, "concurrent": 200, "wait": 100, "breakdown": 50, "warmup": 5}
LANES = 8
WAIT_SECONDS = 30
PHASE_BUDGET = 45.0  # seconds per phase; the run as a whole stays under 3 minutes
DRAIN_BUDGET = 60.0
WARMUP_BUDGET = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds-scale", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="a tenth of the rounds")
    parser.add_argument("--no-write", action="store_true", help="do not write the page")
    parser.add_argument("--output", type=Path, default=DOCS)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument(
        "--storage-only",
        action="store_true",
        help="only the storage benchmarks; rewrites only the page's storage section",
    )
    parts.add_argument("--no-storage", action="store_true", help="skip the storage benchmarks")
    parts.add_argument(
        "--uploads-only",
        action="store_true",
        help="only the upload benchmarks; rewrites only the page's uploads section",
    )
    parser.add_argument("--no-uploads", action="store_true", help="skip the upload benchmarks")
    parts.add_argument(
        "--api-only",
        action="store_true",
        help="only the API benchmarks (issue 6); rewrites only the page's API section",
    )
    parser.add_argument("--no-api", action="store_true", help="skip the API benchmarks")
    parts.add_argument(
        "--operator-only",
        action="store_true",
        help="only the operator benchmark (issue 7); rewrites only the page's operator section",
    )
    parser.add_argument("--no-operator", action="store_true", help="skip the operator benchmark")
    parser.add_argument(
        "--storage-full-size",
        action="store_true",
        help="measure memory with 1 GiB on every provider (GCS's emulator takes minutes)",
    )
    args = parser.parse_args(argv)
    if args.no_uploads and args.uploads_only:
        parser.error("--no-uploads and --uploads-only exclude each other")
    if args.no_api and args.api_only:
        parser.error("--no-api and --api-only exclude each other")
    if args.no_operator and args.operator_only:
        parser.error("--no-operator and --operator-only exclude each other")
    return args


def scaled(scale: float) -> dict[str, int]:
    return {
        name: max(1 if name != "warmup" else 2, round(count * scale))
        for name, count in ROUNDS.items()
    }


async def count(client: Client, query: str) -> int:
    result = await client.count_workflows(query)
    return result.count


# Every provisioned tenant leaves its monitoring workflow running, by design.
BACKLOG = "ExecutionStatus='Running' AND WorkflowType != 'tenant_monitoring_workflow'"


async def drain(client: Client) -> float:
    """Wait until no operation runs any more (bounded); the seconds it took."""
    started = time.monotonic()
    while await count(client, BACKLOG) > 0:
        if time.monotonic() - started > DRAIN_BUDGET:
            print(f"  backlog not drained within {DRAIN_BUDGET:.0f}s", file=sys.stderr)
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def measure(st: stack.Stack, rounds: dict[str, int], results: report.Results) -> None:
    await stack.start_roles(st)
    results.startup_seconds.update(st.startup_seconds)
    meter = Meter()
    meter.watch("api", st.child("api").pid)
    meter.watch("worker", st.child("worker").pid)
    assert st.temporal.pid is not None
    assert st.postgres.pid is not None
    meter.watch("temporal", st.temporal.pid)
    meter.watch("postgres", st.postgres.pid, with_children=True)
    meter.watch("bench client", os.getpid())
    results.startup_cpu = meter.cpu()
    meter.start_sampling()

    client = await connect(st.settings, identity="adx-bench")
    token = mint_token(
        st.settings,
        user_id=str(uuid.uuid4()),
        tenant_id=PLATFORM_TENANT_ID,
        roles=[Role.PLATFORM_ADMIN],
        ttl_seconds=3600,
    )
    connector = aiohttp.TCPConnector(limit=LANES * 2)
    timeout = aiohttp.ClientTimeout(total=load.REQUEST_TIMEOUT)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            api = load.Api(session, st.api_url, token, run_tag=secrets.token_hex(3))
            with Span(meter) as whole:
                await phases(api, client, st, rounds, results, meter)
            results.run_cpu = whole.result
        results.workflows = {
            status.lower(): await count(client, f"ExecutionStatus='{status}'")
            for status in ("Completed", "Failed", "Running", "Canceled", "Terminated", "TimedOut")
        }
    finally:
        await meter.stop_sampling()
        results.rss = {
            w.name: report.Rss(w.rss_first, w.rss_peak, w.rss_last) for w in meter.watched
        }
        results.exit_codes = stack.stop_roles(st)


async def phases(
    api: load.Api,
    client: Client,
    st: stack.Stack,
    rounds: dict[str, int],
    results: report.Results,
    meter: Meter,
) -> None:
    # Warm-up: pools, imports on first use, the first workflow tasks. Not counted. It also
    # makes the finished operation the direct GET reads.
    print("warm-up", flush=True)
    warm = await load.run_rounds(
        "warmup",
        {
            report.POST_WAIT: load.post_wait(api, "warm", WAIT_SECONDS),
            report.READYZ: load.readyz(api),
        },
        rounds=rounds["warmup"],
        lanes=1,
        budget_seconds=WARMUP_BUDGET,
    )
    if warm.series[report.POST_WAIT].errors or not api.started_ids:
        raise RuntimeError(f"warm-up failed: {warm.series[report.POST_WAIT].errors}")
    finished = api.started_ids[0]
    await drain(client)

    plan = [
        ("sequential", 1, load.post_202(api, "seq"), report.POST_202, rounds["sequential"]),
        ("concurrent", LANES, load.post_202(api, "c8"), report.POST_202, rounds["concurrent"]),
        ("wait", 1, load.post_wait(api, "wait", WAIT_SECONDS), report.POST_WAIT, rounds["wait"]),
    ]
    for name, lanes, workflow_call, kind, count_ in plan:
        print(f"{name}: {count_} rounds, {lanes} lane(s)", flush=True)
        with Span(meter) as span:
            phase = await load.run_rounds(
                name,
                {
                    kind: workflow_call,
                    report.GET_OPERATION: load.get_operation(api, finished),
                    report.READYZ: load.readyz(api),
                },
                rounds=count_,
                lanes=lanes,
                budget_seconds=PHASE_BUDGET,
            )
        results.phases.append(phase)
        results.phase_cpu[name] = span.result
        results.drain_seconds[name] = await drain(client)

    print(f"breakdown: {rounds['breakdown']} iterations", flush=True)
    results.breakdown, _ = await breakdown(
        st.settings,
        client,
        api.body,
        lambda index: api.slug("bd", index),
        iterations=rounds["breakdown"],
        budget_seconds=PHASE_BUDGET,
    )
    results.drain_seconds["breakdown"] = await drain(client)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    scale = args.rounds_scale * (0.1 if args.quick else 1.0)
    rounds = scaled(scale)
    workdir = Path(tempfile.mkdtemp(prefix="adx-bench-"))
    only = args.storage_only or args.uploads_only or args.api_only or args.operator_only
    what = (
        "storage only"
        if args.storage_only
        else "uploads only"
        if args.uploads_only
        else "api only"
        if args.api_only
        else "operator only"
        if args.operator_only
        else f"rounds {rounds}"
    )
    upload_results: UploadResults | None = None
    api_results: ApiResults | None = None
    operator_results: OperatorResults | None = None
    print(f"ADX Core benchmarks, {what}, working in {workdir}", flush=True)
    try:
        with stack.servers(workdir) as st:
            date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            results = report.Results(
                date=date,
                machine=report.machine(st.temporal.binary, st.postgres.bin_dir),
                startup_seconds=dict(st.startup_seconds),
            )
            try:
                if not only:
                    asyncio.run(measure(st, rounds, results))
                if not args.no_storage and not (
                    args.uploads_only or args.api_only or args.operator_only
                ):
                    results.storage = storage.StorageResults(
                        date=date, machine=storage_report.machine(results.machine)
                    )
                    asyncio.run(
                        storage.measure(st, results.storage, full_size=args.storage_full_size)
                    )
                if not args.no_uploads and not (
                    args.storage_only or args.api_only or args.operator_only
                ):
                    upload_results = UploadResults(
                        date=date, machine=uploads_report.machine(results.machine)
                    )
                    asyncio.run(uploads.measure(st, upload_results))
                if not args.no_api and not (
                    args.storage_only or args.uploads_only or args.operator_only
                ):
                    api_results = ApiResults(
                        date=date, machine=uploads_report.machine(results.machine)
                    )
                    asyncio.run(api_bench.measure(st, api_results))
                if not args.no_operator and not (
                    args.storage_only or args.uploads_only or args.api_only
                ):
                    operator_results = OperatorResults(
                        date=date, machine=uploads_report.machine(results.machine)
                    )
                    asyncio.run(operator_bench.measure(st, operator_results, scale))
            finally:
                for child in st.children:  # only if measure() failed before stopping them
                    child.stop()
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results.total_seconds = time.monotonic() - began
    if not only:
        print(report.terminal(results))
    if results.storage is not None:
        print(storage_report.terminal(results.storage))
    if upload_results is not None:
        print(uploads_report.terminal(upload_results))
    if api_results is not None:
        print(api_report.terminal(api_results))
    if operator_results is not None:
        print(operator_report.terminal(operator_results))
    print(f"total {results.total_seconds:.0f} s")
    if not args.no_write:
        if only:
            page = args.output.read_text() if args.output.exists() else report.INTRO
            if results.storage is not None:
                page = storage_report.replace_section(
                    page, storage_report.markdown(results.storage)
                )
            if upload_results is not None:
                page = uploads_report.replace_section(page, uploads_report.markdown(upload_results))
            if api_results is not None:
                page = api_report.replace_section(page, api_report.markdown(api_results))
            if operator_results is not None:
                page = operator_report.replace_section(
                    page, operator_report.markdown(operator_results)
                )
            report.write(args.output, page)
        else:
            page = report.markdown(results, rounds)
            old = args.output.read_text() if args.output.exists() else ""
            kept = storage_report.extract_section(old) if results.storage is None else None
            if kept is not None:  # --no-storage keeps the storage figures the page had
                page = storage_report.replace_section(page, kept)
            uploaded = (
                uploads_report.markdown(upload_results)
                if upload_results is not None
                else uploads_report.extract_section(old)  # --no-uploads keeps them too
            )
            if uploaded is not None:
                page = uploads_report.replace_section(page, uploaded)
            measured = (
                api_report.markdown(api_results)
                if api_results is not None
                else api_report.extract_section(old)  # --no-api keeps them too
            )
            if measured is not None:
                page = api_report.replace_section(page, measured)
            operated = (
                operator_report.markdown(operator_results)
                if operator_results is not None
                else operator_report.extract_section(old)  # --no-operator keeps them too
            )
            if operated is not None:
                page = operator_report.replace_section(page, operated)
            report.write(args.output, page)
        print(f"wrote {args.output}")
    return 0
