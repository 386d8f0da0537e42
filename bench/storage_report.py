"""The storage benchmarks' part of the terminal table and of docs/benchmarks.md."""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata
from pathlib import Path

from bench.page_section import PageSection
from bench.storage import (
    FILE_SIZE,
    FILES,
    MB,
    MEMORY_LIMIT_MB,
    MIB,
    OTHERS,
    RATIO_TARGET,
    REDUCED,
    STEP_FILES,
    WARMUP_FILES,
    Migration,
    StorageResults,
    Timed,
)
from bench.storage_steps import DB

HEADING = "## Storage (issue 4)"
AZURITE_PACKAGE = Path(__file__).resolve().parent.parent / "node_modules/azurite/package.json"
ACTIVITY_ORDER = (
    "start_migration_activity",
    "inventory_migration_activity",
    "list_migration_page_activity",
    "copy_migration_batch_activity",
    "switch_file_records_activity",
    "finish_migration_activity",
)
CPU_ORDER = ("worker", "moto", "postgres", "temporal", "bench client", OTHERS)


def machine(base: dict[str, str]) -> str:
    """One line: the machine, then the storage clients and servers measured."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    try:
        azurite = json.loads(AZURITE_PACKAGE.read_text())["version"]
    except (OSError, ValueError, KeyError):
        azurite = "?"
    cores = base.get("cores (nproc)", "?")
    return (
        f"{base.get('CPU', platform.processor())}, {cores} cores, "
        f"{base.get('memory (free -g)', '?')}, {base.get('kernel', '?')}, "
        f"Python {platform.python_version()}; minio {version('minio')}, "
        f"azure-storage-blob {version('azure-storage-blob')}, "
        f"google-cloud-storage {version('google-cloud-storage')}; servers: moto "
        f"{version('moto')}, Azurite {azurite}, gcp-storage-emulator "
        f"{version('gcp-storage-emulator')}"
    )


# -- rows ---------------------------------------------------------------------------------


def _mb(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.1f}"


def _s(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f}"


def _rate(size: int, seconds: float) -> str:
    return _mb(size / MB / seconds) if seconds > 0 else "—"


def _size(size: int) -> str:
    return f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / MIB:,.0f} MiB"


def requirement_rows(results: StorageResults) -> list[list[str]]:
    rows = []
    for m in results.memory:
        reduced = " (reduced size)" if m.reduced else ""
        measured = (
            f"{m.error}"
            if m.error
            else f"{_mb(m.growth_mb)} MB over {_size(m.size)}{reduced}, "
            f"bytes {'intact' if m.intact else 'NOT intact'}"
        )
        rows.append(
            [
                f"RSS growth < {MEMORY_LIMIT_MB:.0f} MB, put + get ({m.kind})",
                measured,
                "met" if m.met else "NOT met",
            ]
        )
    plain = results.plain_mean
    for migration in results.migrations:
        ratio = results.ratio(migration)
        rows.append(
            [
                f"migration at ≥ {RATIO_TARGET} of the plain loop ({_config(migration)})",
                f"{ratio:.2f} ({_rate_files(migration.timed)} vs "
                f"{_rate_files(plain) if plain else '—'} files/s)",
                "met" if ratio >= RATIO_TARGET else "NOT met",
            ]
        )
    return rows


REQUIREMENT_HEADER = ["requirement (issue 4)", "measured", "verdict"]


def memory_rows(results: StorageResults) -> list[list[str]]:
    rows = []
    for m in results.memory:
        if m.error:
            rows.append([m.kind, _size(m.size), *(["—"] * 9), m.error])
            continue
        rows.append(
            [
                m.kind,
                _size(m.size) + (" *" if m.reduced else ""),
                f"{m.put_seconds:.1f} ({_rate(m.size, m.put_seconds)})",
                f"{m.get_seconds:.1f} ({_rate(m.size, m.get_seconds)})",
                _mb(m.rss_before / MB),
                _mb(m.rss_peak / MB),
                _mb(m.hwm / MB) if m.hwm else "—",
                f"**{_mb(m.growth_mb)}**",
                f"{m.largest_chunk / MIB:g} / {m.part_size / MIB:g}",
                _s(m.child_cpu),
                _s(m.server_cpu),
                "yes" if m.intact else "NO",
            ]
        )
    return rows


MEMORY_HEADER = [
    "provider",
    "object",
    "put s (MB/s)",
    "get s (MB/s)",
    "RSS before MB",
    "RSS peak sampled MB",
    "VmHWM MB",
    "growth MB",
    "largest chunk / part MiB",
    "client CPU s",
    "server CPU s",
    "sha256 intact",
]


def _config(migration: Migration) -> str:
    return f"batch {migration.batch_size}, parallelism {migration.parallelism}"


def _rate_files(timed: Timed) -> str:
    return f"{timed.files_per_second:,.0f}"


def _per_file(timed: Timed) -> str:
    if not timed.requests or not timed.files:
        return "—"
    parts = [
        f"{method} {count / timed.files:.2f}"
        for method, count in sorted(timed.requests.items())
        if count / timed.files >= 0.005
    ]
    return ", ".join(parts)


def throughput_rows(results: StorageResults) -> list[list[str]]:
    rows: list[list[str]] = []
    plain = results.plain_mean
    runs: list[tuple[Timed, str]] = [(t, "") for t in results.plain]
    if plain is not None and len(results.plain) > 1:
        runs.append((plain, "**1.00**"))
    rss = {
        id(m.timed): f"{m.worker_rss_first / MB:,.0f} → {m.worker_rss_peak / MB:,.0f}"
        for m in results.migrations
        if m.worker_rss_peak
    }
    runs += [(m.timed, f"**{results.ratio(m):.2f}**" if plain else "—") for m in results.migrations]
    if results.parallel_plain is not None:
        parallel = plain.seconds / results.parallel_plain.seconds if plain else math.nan
        runs.append((results.parallel_plain, f"({parallel:.2f})"))
    for timed, ratio in runs:
        rows.append(
            [
                timed.name,
                f"{timed.seconds:.1f}",
                _rate_files(timed),
                _mb(timed.mb_per_second),
                ratio,
                _per_file(timed),
                *(_s(timed.cpu.get(name)) if timed.cpu else "" for name in CPU_ORDER),
                rss.get(id(timed), ""),
            ]
        )
    return rows


THROUGHPUT_HEADER = [
    "run",
    "s",
    "files/s",
    "MB/s",
    "ratio to the plain loop",
    "S3 requests per file",
    *(f"{name} CPU s" for name in CPU_ORDER),
    "worker RSS MB, first → peak",
]


def activity_rows(results: StorageResults) -> list[list[str]]:
    rows = []
    for m in results.migrations:
        names = [n for n in ACTIVITY_ORDER if n in m.activities]
        names += sorted(set(m.activities) - set(names))
        for name in names:
            a = m.activities[name]
            rows.append(
                [
                    _config(m),
                    name,
                    str(a.count),
                    f"{a.queued:.2f}",
                    f"{a.ran:.2f}",
                    f"{a.ran / m.timed.seconds:.0%}",
                ]
            )
        t = m.workflow_tasks
        rows.append(
            [
                _config(m),
                "workflow tasks (the workflow's own turns)",
                str(t.count),
                f"{t.queued:.2f}",
                f"{t.ran:.2f}",
                f"{t.ran / m.timed.seconds:.0%}",
            ]
        )
    return rows


ACTIVITY_HEADER = ["migration", "step", "n", "queued s (sum)", "ran s (sum)", "share of the run"]


def step_rows(results: StorageResults) -> list[list[str]]:
    steps = results.steps
    if steps is None or not steps.files:
        return []
    rows = []
    counted_wall = counted_cpu = 0.0
    for label, cost in sorted(steps.calls.items(), key=lambda item: -item[1].cpu):
        counted_wall += cost.wall
        counted_cpu += cost.cpu
        rows.append(
            [
                label,
                f"{cost.calls / steps.files:.2f}",
                f"{steps.per_file_ms(cost.wall):.2f}" if cost.timed else "(in the put)",
                f"{steps.per_file_ms(cost.cpu):.2f}" if cost.timed else "",
                f"{cost.cpu / steps.cpu:.0%}" if cost.timed and steps.cpu else "",
            ]
        )
    # Slightly negative when a flush of rows overlapped a copy: nothing left over.
    rest_cpu = max(0.0, steps.cpu - counted_cpu)
    rows.append(
        [
            "the activity's own code (hashing, sorting, heartbeats, event loop)",
            "",
            f"{steps.per_file_ms(max(0.0, steps.wall - counted_wall)):.2f}",
            f"{steps.per_file_ms(rest_cpu):.2f}",
            f"{rest_cpu / steps.cpu:.0%}" if steps.cpu else "",
        ]
    )
    rows.append(
        [
            f"**one file, all of it** ({steps.files} files, parallelism 1)",
            "",
            f"**{steps.per_file_ms(steps.wall):.2f}**",
            f"**{steps.per_file_ms(steps.cpu):.2f}**",
            "100%",
        ]
    )
    for m in results.migrations:
        worker = m.timed.cpu.get("worker", math.nan)
        if m.timed.files and not math.isnan(worker):
            rows.append(
                [
                    f"for comparison: the worker in the migration ({_config(m)})",
                    "",
                    "",
                    f"{worker / m.timed.files * 1000:.2f}",
                    "",
                ]
            )
    return rows


STEP_HEADER = ["call", "calls per file", "wall ms per file", "CPU ms per file", "share of the CPU"]


# -- findings -----------------------------------------------------------------------------


def observations(results: StorageResults) -> list[str]:
    """Findings worded from this run's figures, so they stay true when the page is rewritten."""
    notes: list[str] = []
    ok = [m for m in results.memory if not m.error]
    if ok:
        worst = max(ok, key=lambda m: m.growth_mb)
        notes.append(
            f"Streaming through put and get grows a process by at most {_mb(worst.growth_mb)} "
            f"MB ({worst.kind}), against {MEMORY_LIMIT_MB:.0f} MB allowed: memory follows the "
            "part size (chunks of at most one part, a part or two buffered by the client), "
            "not the object's size. Every object came back with the SHA-256 it was sent with."
            if all(m.intact for m in ok)
            else "Some object did NOT come back intact (see the table)."
        )
    for m in results.memory:
        if m.reduced:
            notes.append(
                f"{m.kind} was measured with {_size(m.size)}, not 1 GiB: the GCS emulator "
                "appends each part of a resumable upload to the bytes it already holds, so "
                "its time grows with the square of the size (about 70 s for 1 GiB here). "
                "`--storage-full-size` measures 1 GiB anyway."
            )
    s3 = next((m for m in ok if m.kind == "s3"), None)
    if s3 is not None and s3.server_cpu:
        notes.append(
            f"S3's put of {_size(s3.size)} takes {s3.put_seconds:.0f} s, most of it moto's "
            f"own CPU ({s3.server_cpu:.0f} s): the provider uploads the parts to a staging "
            "key and then copies the object server-side onto its key with the hash in its "
            "metadata, and moto assembles and copies in Python."
        )
    plain = results.plain_mean
    best = max(results.migrations, key=lambda m: m.timed.files_per_second, default=None)
    if plain is not None and best is not None:
        notes.append(_throughput_note(results, plain, best))
    step_note = _step_note(results)
    if step_note:
        notes.append(step_note)
    return notes


REQUEST_MEANING = {
    "HEAD": "HEAD (is the file already on the target?)",
    "PUT": "PUT (the copy)",
    "GET": "GET (the copy read back to verify its hash)",
}


def _requests(timed: Timed) -> str:
    return ", ".join(
        f"{count / timed.files:.2f} {REQUEST_MEANING.get(method, method)}"
        for method, count in sorted(timed.requests.items(), key=lambda item: -item[1])
        if timed.files and count / timed.files >= 0.005
    )


def _ours(timed: Timed) -> float:
    return sum(v for k, v in timed.cpu.items() if k != OTHERS and not math.isnan(v))


def _throughput_note(results: StorageResults, plain: Timed, best: Migration) -> str:
    timed = best.timed
    ratio = results.ratio(best)
    verdict = "meets" if ratio >= RATIO_TARGET else "does NOT meet"
    text = (
        f"The best migration ({_config(best)}) moves {_rate_files(timed)} files/s, "
        f"{ratio:.2f} of the plain loop's {_rate_files(plain)} files/s: it {verdict} the "
        f"{RATIO_TARGET} asked for."
    )
    plain_run = results.plain[0]
    requests = sum(timed.requests.values())
    if timed.files and plain_run.files:
        text += (
            f" Per file the workflow makes {requests / timed.files:.1f} S3 requests "
            f"({_requests(timed)}) where the plain loop makes "
            f"{sum(plain_run.requests.values()) / plain_run.files:.1f}."
        )
    moto_wf = timed.cpu.get("moto", math.nan)
    moto_plain = plain_run.cpu.get("moto", math.nan)
    busy = _ours(timed)
    floor = busy / results.cores
    text += (
        f" moto's cost is per request, not per byte: {moto_plain:.1f} s of its CPU for the "
        f"plain loop, {moto_wf:.1f} s for the migration. The processes used {busy:.1f} CPU "
        f"s during the migration against {_ours(plain_run):.1f} s for the plain "
        f"loop: even with all {results.cores} cores busy all the time the migration would "
        f"take at least {floor:.1f} s, a ratio of at most {plain.seconds / floor:.2f}."
    )
    if requests and not math.isnan(moto_wf):
        text += (
            " moto alone is a ceiling too: it serves on one core (one Python process), and "
            f"it spent {moto_wf:.1f} s of CPU on the migration's {requests:,} requests, so "
            "however fast the worker were, the ratio could not pass "
            f"{plain.seconds / moto_wf:.2f} against this server."
        )
    par = results.parallel_plain
    if par is not None:
        moto = par.cpu.get("moto", math.nan)
        text += (
            f" For scale: the plain loop on 8 threads takes {par.seconds:.1f} s against "
            f"{plain.seconds:.1f} s one file after the other, with moto at "
            f"{moto / par.seconds:.0%} of a core."
        )
    return text


def _step_note(results: StorageResults) -> str:
    steps = results.steps
    if steps is None or not steps.files or not steps.cpu:
        return ""
    s3 = sum(c.cpu for label, c in steps.calls.items() if label.startswith("S3"))
    db = steps.calls.get(DB)
    db_cpu = db.cpu if db else 0.0
    rest = max(0.0, steps.cpu - sum(c.cpu for c in steps.calls.values()))
    text = (
        f"Inside a batch, one file at a time, a file takes {steps.per_file_ms(steps.wall):.1f}"
        f" ms on the wall clock and {steps.per_file_ms(steps.cpu):.1f} ms of CPU in the "
        f"worker's code: the S3 calls {steps.per_file_ms(s3):.1f} ms of it "
        f"({s3 / steps.cpu:.0%}), PostgreSQL {steps.per_file_ms(db_cpu):.1f} ms "
        f"({db_cpu / steps.cpu:.0%}, {db.calls / steps.files if db else 0:.2f} "
        f"transactions per file), the activity's own code {steps.per_file_ms(rest):.1f} ms, "
        "the local stat the rest."
    )
    per_file = [
        m.timed.cpu["worker"] / m.timed.files * 1000
        for m in results.migrations
        if m.timed.files and "worker" in m.timed.cpu
    ]
    if per_file:
        text += (
            f" In the migrations the worker spent {min(per_file):.1f} to "
            f"{max(per_file):.1f} ms of CPU per file, Temporal's share (activity tasks, "
            "heartbeats, the workflow's turns) and running many files at once included."
        )
    return text


# -- output -------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _plain_table(header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [[c.replace("**", "") for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


SECTIONS = (
    ("Requirements", REQUIREMENT_HEADER, requirement_rows),
    ("Memory: one large object through put and get", MEMORY_HEADER, memory_rows),
    (
        f"Throughput: {FILES:,} files of {FILE_SIZE // 1000} KB, local → S3 (moto)",
        THROUGHPUT_HEADER,
        throughput_rows,
    ),
    ("Where the migration's time goes (from its history)", ACTIVITY_HEADER, activity_rows),
    ("Inside a batch: what one file costs, call by call", STEP_HEADER, step_rows),
)


def terminal(results: StorageResults) -> str:
    out: list[str] = []
    for title, header, rows in SECTIONS:
        out += ["", f"Storage: {title}", *_plain_table(header, rows(results))]
    out += ["", *(f"- {note}" for note in observations(results))]
    out.append("storage timings: " + _timings(results))
    return "\n".join(out)


def _timings(results: StorageResults) -> str:
    return ", ".join(f"{k} {v:.0f} s" for k, v in results.seconds.items())


INTRO = """\
{heading}

Measured on {date} on {machine}.
{how}
MB here is 10^6 bytes. `make bench` runs this part after the others, against the same
PostgreSQL and Temporal; `.venv/bin/python -m bench --storage-only` runs it alone and
rewrites this section only.

**Memory.** For each provider a child process (`python -m bench.stream_child`) opens the
provider from `ADX_*` variables as a worker does, makes a small put and get (imports, the
client, its connection pool), and then puts one large object generated in chunks of 1 MiB,
never whole, and reads it back. This process samples the child's RSS with psutil every
20 ms from the moment it is told to start; the child resets the kernel's high-water mark
(`VmHWM`) at that moment and reports it at the end, so a peak between two samples is not
missed. The growth is the higher of the two peaks less the RSS before. The object's
SHA-256, computed while generating it, must equal the one `put` recorded and the one of
the bytes `get` returned. Servers: a folder on the machine's disk for local, moto for S3,
Azurite (in memory) for Azure, the GCS emulator (in memory) for GCS.

**Throughput.** A tenant with {files:,} files of {kb} KB on local (rows in `tenants` and
`files` as the tests seed them) is moved to S3 (moto) by `file_migration_workflow`,
started through Temporal and run by `adx worker files` as a process of its own, timed
from `start_workflow` to its result (every file copied and verified, every record
switched, the migration committed). The yardstick, in the same run against the same moto:
a plain loop that reads each of the same files and `put_object`s it with a default minio
client into a fresh bucket, one after the other; it runs before and after the migrations
and the ratio uses the mean of the two. Ratio = workflow files/s ÷ plain files/s (the
same as the MB/s ratio: the same bytes). A warm-up migration of {warm} files runs first
and is not counted. For scale only, the plain loop also runs on 8 threads. S3 requests
are counted from moto's request log; CPU is user + system time from psutil while each
run lasted ("rest of the machine": whatever else ran on this shared machine meanwhile,
from the machine's own counters); the worker's RSS is sampled every 0.25 s during each
migration.

**Inside a batch.** Then the bench process runs the real `copy_migration_batch_activity`
itself, in-process (`temporalio.testing.ActivityEnvironment`), on one batch of {steps}
more files with parallelism 1, so that no two calls overlap, with the worker's own
classes, the same settings and the application's database role
(`bench/storage_steps.py`). Every storage call and every database session (checkout and
pre-ping, `set_config` for row-level security, the statements, the commit) is counted
and timed, on the wall clock and in CPU time of the process (all its threads); the rest
of the batch's time is the activity's own code.
"""


def markdown(results: StorageResults) -> str:
    how = ""
    if results.notes:
        how = "\n" + " ".join(results.notes) + "\n"
    out = [
        INTRO.format(
            heading=HEADING,
            date=results.date,
            machine=results.machine,
            how=how,
            files=FILES,
            kb=FILE_SIZE // 1000,
            warm=WARMUP_FILES,
            steps=STEP_FILES,
        )
    ]
    for title, header, rows in SECTIONS:
        out += [f"### {title}", "", *_table(header, rows(results)), ""]
        if rows is memory_rows and any(m.reduced for m in results.memory):
            sizes = ", ".join(f"{k} {_size(v)}" for k, v in REDUCED.items())
            out += [f"\\* measured at a reduced size ({sizes}); see below.", ""]
    notes = observations(results)
    if notes:
        out += ["### What these figures say", "", *(f"- {note}" for note in notes), ""]
    out.append(f"Time taken by this part: {_timings(results)}.")
    if not results.xattrs:
        out.append(
            "\nThe local folder has no extended attributes: local `stat` computes the "
            "SHA-256 by reading the file."
        )
    return "\n".join(out) + "\n"


_SECTION = PageSection(HEADING)
extract_section = _SECTION.extract
replace_section = _SECTION.replace
