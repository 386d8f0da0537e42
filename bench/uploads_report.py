"""The upload benchmarks' part of the terminal output and of docs/benchmarks.md."""

from __future__ import annotations

import math
import platform
from importlib import metadata

from adx_core.contracts.plans import PLANS, Plan
from bench.page_section import PageSection
from bench.stats import Series, Summary, ratio
from bench.uploads import DIRECT_SCAN_SIZE, SIDE_BY_SIDE_ROUNDS, SMALL_SIZE, WARMUP_UPLOADS
from bench.uploads_results import (
    GIB,
    LARGE_AIM_SECONDS,
    LARGE_LIMIT_SECONDS,
    MB,
    MIB,
    RSS_LIMIT_MB,
    SMALL_UPLOADS,
    Burst,
    LargeUpload,
    Plain,
    Rss,
    Step,
    UploadResults,
)
from bench.uploads_small import IN_FLIGHT, YARDSTICK_EVERY

HEADING = "## Uploads (issue 5)"
LIMITED = ("api", "files worker")
CPU_ORDER = ("api", "files worker", "clamd", "temporal", "postgres", "bench client")
STREAMING = {"virus_scan_activity", "promote_file_activity", "assemble_upload_activity"}


def machine(base: dict[str, str]) -> str:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return (
        f"{base.get('CPU', platform.processor())}, {base.get('cores (nproc)', '?')} cores, "
        f"{base.get('memory (free -g)', '?')}, {base.get('kernel', '?')}, "
        f"Python {platform.python_version()}; aiohttp {version('aiohttp')}, temporalio "
        f"{version('temporalio')}; {base.get('Temporal dev server', 'Temporal ?')}; "
        f"{base.get('PostgreSQL', 'PostgreSQL ?')}"
    )


# -- formatting ---------------------------------------------------------------------------


def _num(value: float, digits: int = 1) -> str:
    return "—" if math.isnan(value) else f"{value:,.{digits}f}"


def _mb(size: int | None) -> str:
    return "—" if size is None else f"{size / MB:,.0f}"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _x(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def _size(size: int) -> str:
    return f"{size / GIB:g} GiB" if size >= GIB else f"{size / MIB:g} MiB"


def _rate(size: int, seconds: float) -> float:
    return size / MB / seconds if seconds > 0 else math.nan


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _plain_table(header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [[c.replace("**", "").replace("`", "") for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def _step(large: LargeUpload, name: str) -> Step | None:
    return next((s for s in large.steps if s.name == name), None)


# -- requirements -------------------------------------------------------------------------


def _large_requirement(large: LargeUpload | None) -> list[str]:
    need = (
        f"1 GiB through the API on local, scan included, completes (seed: < "
        f"{LARGE_LIMIT_SECONDS / 60:.0f} min; aim < {LARGE_AIM_SECONDS:.0f} s)"
    )
    if large is None:
        return [need, "not measured", "NOT met"]
    if not large.succeeded:
        return [need, f"{large.status or 'no operation'}: {large.error}", "NOT met"]
    aim = "under" if large.total_seconds < LARGE_AIM_SECONDS else "OVER"
    intact = "sha256 intact" if large.intact else "sha256 NOT intact"
    ok = large.total_seconds < LARGE_LIMIT_SECONDS and large.intact
    return [
        need,
        f"{large.total_seconds:.1f} s end to end ({aim} the {LARGE_AIM_SECONDS:.0f} s aimed "
        f"for), file `{large.file_status}`, {intact}",
        "met" if ok else "NOT met",
    ]


def requirement_rows(results: UploadResults) -> list[list[str]]:
    large = results.large
    rows = [_large_requirement(large)]
    for name in LIMITED:
        rss = large.rss.get(name) if large else None
        need = f"{name} RSS < {RSS_LIMIT_MB:.0f} MB while the 1 GiB upload runs"
        if rss is None:
            rows.append([need, "not measured", "NOT met"])
            continue
        ok = rss.peak / MB < RSS_LIMIT_MB and large is not None and large.succeeded
        rows.append(
            [
                need,
                f"peak {_mb(rss.peak)} MB (before {_mb(rss.baseline)} MB)",
                "met" if ok else "NOT met",
            ]
        )
    burst = results.burst
    need = f"{SMALL_UPLOADS} concurrent small uploads all complete"
    if burst is None:
        rows.append([need, "not measured", "NOT met"])
    else:
        s = burst.to_202.summary()
        ok = burst.succeeded == burst.count == SMALL_UPLOADS
        rows.append(
            [
                need,
                f"{burst.succeeded} of {burst.count} succeeded within "
                f"{_num(burst.all_done_seconds)} s; 202 at p50 {_ms(s.p50_ms)} ms, p99 "
                f"{_ms(s.p99_ms)} ms",
                "met" if ok else "NOT met",
            ]
        )
    return rows


REQUIREMENT_HEADER = ["requirement (issue 5)", "measured", "verdict"]


# -- the 1 GiB upload, step by step --------------------------------------------------------


def _covered(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``intervals``."""
    total, end = 0.0, -math.inf
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def step_rows(results: UploadResults) -> list[list[str]]:
    large = results.large
    if large is None or math.isnan(large.seconds_to_202):
        return []
    total = large.total_seconds if large.succeeded else math.nan

    def share(seconds: float) -> str:
        return f"{seconds / total:.0%}" if total > 0 else "—"

    rows = [
        [
            "the 202: HTTP body streamed into quarantine (local, fsync), workflow started",
            "0.00",
            "",
            f"{large.seconds_to_202:.2f}",
            share(large.seconds_to_202),
            _num(_rate(large.size, large.seconds_to_202), 0),
        ]
    ]
    for step in large.steps:
        attempts = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
        outcome = f", {step.outcome}" if step.outcome != "completed" else ""
        rows.append(
            [
                f"`{step.name}`{attempts}{outcome}",
                f"{step.scheduled:.2f}",
                f"{step.queued:.2f}",
                f"{step.ran:.2f}",
                share(step.ran),
                _num(_rate(large.size, step.ran), 0) if step.name in STREAMING else "",
            ]
        )
    if total > 0:
        covered = _covered(
            [(0.0, large.seconds_to_202)] + [(s.scheduled, s.closed) for s in large.steps]
        )
        rest = max(0.0, total - covered)
        rows.append(
            ["the workflow's own turns between the steps", "", "", f"{rest:.2f}", share(rest), ""]
        )
        rows.append(
            [
                "**end to end** (POST to the workflow's completion)",
                "",
                "",
                f"**{total:.2f}**",
                "100%",
                f"**{_num(large.mb_per_second, 0)}**",
            ]
        )
    if not math.isnan(large.client_saw_done):
        rows.append(
            [
                "the client saw `succeeded` (polling the operation every 0.5 s)",
                "",
                "",
                f"{large.client_saw_done:.2f}",
                "",
                "",
            ]
        )
    return rows


STEP_HEADER = ["step", "scheduled at s", "queued s", "ran s", "share", "MB/s"]


# -- throughput, side by side -------------------------------------------------------------


def throughput_rows(results: UploadResults) -> list[list[str]]:
    rows = []
    for p in results.plain:
        rows.append([p.name, p.detail, f"{p.seconds:.2f}", _num(p.mb_per_second, 0), "", ""])
    direct = results.direct_scan
    if direct is not None:
        rows.append(
            [
                f"clamd alone, {_size(direct.bytes)} (INSTREAM from the bench, {direct.verdict})",
                f"{direct.send_seconds:.2f} s sending, {direct.verdict_seconds:.2f} s to the "
                "verdict after the last byte",
                f"{direct.seconds:.2f}",
                _num(_rate(direct.bytes, direct.seconds), 0),
                "",
                "",
            ]
        )
    large = results.large
    if large is None or not large.succeeded:
        return rows
    write = results.plain_mean("plain write")
    copy = results.plain_mean("plain copy")
    compared: list[tuple[str, str, float, Plain | None, str]] = [
        ("**1 GiB upload, end to end**", "", large.total_seconds, copy, "plain copy (mean)"),
        ("its 202 (body into quarantine)", "", large.seconds_to_202, write, "plain write (mean)"),
    ]
    for name, against, label in (
        ("virus_scan_activity", None, "clamd alone"),
        ("promote_file_activity", copy, "plain copy (mean)"),
    ):
        step = _step(large, name)
        if step is not None:
            compared.append((f"its `{name}`", "", step.ran, against, label))
    for name, detail, seconds, against, label in compared:
        rate = _rate(large.size, seconds)
        if against is not None:
            base = against.mb_per_second
        elif direct is not None:
            base = _rate(direct.bytes, direct.seconds)
        else:
            base = math.nan
        rows.append(
            [name, detail, f"{seconds:.2f}", _num(rate, 0), label, f"**{_x(ratio(rate, base))}**"]
        )
    return rows


THROUGHPUT_HEADER = ["run", "how", "s", "MB/s", "compared with", "ratio of the MB/s"]


# -- small uploads ------------------------------------------------------------------------


def _latency_row(part: str, series: Series) -> list[str]:
    s = series.summary()
    return [
        part,
        series.name,
        str(s.count),
        str(s.errors),
        _ms(s.p50_ms),
        _ms(s.p90_ms),
        _ms(s.p99_ms),
        _ms(s.max_ms),
    ]


def _one_client(results: UploadResults) -> str:
    return f"one client ({results.sequential_rounds} rounds)"


def _in_burst(burst: Burst) -> str:
    return f"burst ({burst.count} at once, {burst.in_flight} in flight)"


def latency_rows(results: UploadResults) -> list[list[str]]:
    rows = [_latency_row(_one_client(results), s) for s in results.sequential.values()]
    burst = results.burst
    if burst is not None:
        rows += [
            _latency_row(_in_burst(burst), s)
            for s in (burst.to_202, burst.tenants_202, burst.readyz)
        ]
    return rows


LATENCY_HEADER = ["part", "request", "n", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"]


def _pair(a: Summary, b: Summary) -> tuple[str, str]:
    return _x(ratio(a.p50_ms, b.p50_ms)), _x(ratio(a.p99_ms, b.p99_ms))


def _sequential(results: UploadResults) -> tuple[Summary, Summary] | None:
    files = next((s for k, s in results.sequential.items() if k.startswith("POST /v1/files")), None)
    tenants = next(
        (s for k, s in results.sequential.items() if k.startswith("POST /v1/tenants")), None
    )
    if files is None or tenants is None:
        return None
    return files.summary(), tenants.summary()


def latency_ratio_rows(results: UploadResults) -> list[list[str]]:
    rows = []
    one = _sequential(results)
    if one is not None:
        rows.append([_one_client(results), "upload 202 ÷ tenant 202", *_pair(*one)])
    burst = results.burst
    if burst is not None:
        files, tenants = burst.to_202.summary(), burst.tenants_202.summary()
        rows.append([_in_burst(burst), "upload 202 ÷ tenant 202", *_pair(files, tenants)])
        if one is not None:
            rows.append(["burst ÷ one client", "upload 202", *_pair(files, one[0])])
            rows.append(["burst ÷ one client", "tenant 202", *_pair(tenants, one[1])])
    return rows


LATENCY_RATIO_HEADER = ["part", "ratio", "at p50", "at p99"]


# -- processes ----------------------------------------------------------------------------


def _parts(results: UploadResults) -> list[tuple[str, dict[str, Rss], dict[str, float], float]]:
    parts = []
    large = results.large
    if large is not None and large.rss:
        wall = large.client_saw_done if not math.isnan(large.client_saw_done) else math.nan
        parts.append((f"{_size(large.size)} upload", large.rss, large.cpu, wall))
    burst = results.burst
    if burst is not None and burst.rss:
        parts.append((f"{burst.count} small uploads", burst.rss, burst.cpu, burst.all_done_seconds))
    return parts


def rss_rows(results: UploadResults) -> list[list[str]]:
    rows = []
    for part, rss, _, _ in _parts(results):
        for name, r in rss.items():
            limit = ""
            if name in LIMITED:
                limit = "under" if r.peak / MB < RSS_LIMIT_MB else "**OVER**"
            rows.append(
                [
                    part,
                    name,
                    _mb(r.baseline),
                    _mb(r.sampled_peak),
                    _mb(r.hwm),
                    f"**{_num((r.peak - r.baseline) / MB)}**",
                    limit,
                ]
            )
    return rows


RSS_HEADER = [
    "part",
    "process",
    "RSS before MB",
    "peak sampled MB",
    "VmHWM MB",
    "growth MB",
    f"{RSS_LIMIT_MB:.0f} MB",
]


def cpu_rows(results: UploadResults) -> list[list[str]]:
    rows = []
    for part, _, cpu, wall in _parts(results):
        rows.append([part, _num(wall), *(_num(cpu.get(n, math.nan), 2) for n in CPU_ORDER)])
    return rows


CPU_HEADER = ["part", "wall s", *(f"{name} CPU s" for name in CPU_ORDER)]


# -- findings -----------------------------------------------------------------------------


def observations(results: UploadResults) -> list[str]:
    """Findings worded from this run's figures, so they stay true when the page is rewritten."""
    notes = []
    large = results.large
    if large is not None and large.succeeded:
        notes.append(_large_note(results, large))
        memory = _memory_note(large)
        if memory:
            notes.append(memory)
    scan_note = _scan_limits_note(results)
    if scan_note:
        notes.append(scan_note)
    one = _sequential(results)
    if one is not None:
        files, tenants = one
        notes.append(
            f"With one client a small upload's 202 takes {_ms(files.p50_ms)} ms at p50, "
            f"{_x(ratio(files.p50_ms, tenants.p50_ms))}x the {_ms(tenants.p50_ms)} ms of "
            "`POST /v1/tenants` measured in the same rounds: both check the caller and start "
            f"a workflow; the upload also looks up its tenant's plan and streams "
            f"{SMALL_SIZE // 1024} KiB into quarantine with an fsync before it starts one."
        )
    if results.burst is not None:
        notes.append(_burst_note(results, results.burst))
    return notes


def _large_note(results: UploadResults, large: LargeUpload) -> str:
    total = large.total_seconds
    scan = _step(large, "virus_scan_activity")
    promote = _step(large, "promote_file_activity")
    write = results.plain_mean("plain write")
    text = (
        f"The {_size(large.size)} upload took {total:.1f} s from the first byte to the "
        f"workflow's completion, {total / LARGE_LIMIT_SECONDS:.0%} of the 5 minutes the seed "
        f"allows. The API had streamed the body into quarantine and answered 202 after "
        f"{large.seconds_to_202:.1f} s ({_num(_rate(large.size, large.seconds_to_202), 0)} MB/s"
        + (
            f", {_x(ratio(_rate(large.size, large.seconds_to_202), write.mb_per_second))} of "
            "a plain write of the same bytes)"
            if write
            else ")"
        )
        + "."
    )
    if scan is not None:
        clamd = large.cpu.get("clamd", math.nan)
        text += (
            f" `virus_scan_activity` is {scan.ran / total:.0%} of the total ({scan.ran:.1f} s, "
            f"{_num(_rate(large.size, scan.ran), 0)} MB/s), and that is clamd's own work: "
            f"clamd used {_num(clamd)} s of CPU during the upload while the files worker used "
            f"{_num(large.cpu.get('files worker', math.nan))} s."
        )
    direct = results.direct_scan
    if direct is not None and direct.seconds > 0:
        text += (
            f" clamd alone, fed by this process over the same socket, took "
            f"{direct.seconds:.1f} s for {_size(direct.bytes)} "
            f"({_num(_rate(direct.bytes, direct.seconds), 0)} MB/s), "
            f"{direct.verdict_seconds / direct.seconds:.0%} of it after the last byte: clamd "
            "stores the stream in a temporary file and scans it once it has all of it."
        )
    if promote is not None:
        copy = results.plain_mean("plain copy")
        text += (
            f" `promote_file_activity` copied the file out of quarantine in {promote.ran:.1f} s"
            + (
                f" ({_x(ratio(_rate(large.size, promote.ran), copy.mb_per_second))} of a plain "
                "copy's MB/s; the plain copy is fsynced, the local provider's copy is not)"
                if copy
                else ""
            )
            + "."
        )
    return text


def _memory_note(large: LargeUpload) -> str:
    parts = [
        f"{name} {_mb(r.baseline)} → {_mb(r.peak)} MB"
        for name, r in large.rss.items()
        if r.baseline
    ]
    if not parts:
        return ""
    worst = max((large.rss[n] for n in LIMITED if n in large.rss), key=lambda r: r.peak)
    return (
        f"While the {_size(large.size)} went through, RSS before → peak: {', '.join(parts)}. "
        f"No process holds the file: the highest peak of the API and the worker, "
        f"{_mb(worst.peak)} MB, is {_x(worst.peak / MB / RSS_LIMIT_MB)} of the "
        f"{RSS_LIMIT_MB:.0f} MB allowed, and most of it is what the process held before."
    )


def _scan_limits_note(results: UploadResults) -> str:
    direct = results.direct_scan
    enterprise = PLANS[Plan.ENTERPRISE].quotas.file_bytes
    text = (
        f"The largest file clamd scans is {results.scan_max_bytes:,} bytes, 4 GiB less one "
        "(StreamMaxLength, MaxFileSize and MaxScanSize stop there, and so does "
        f"ADX_SCAN_MAX_BYTES), while the enterprise plan allows files of "
        f"{enterprise / GIB:g} GiB: a file between the two is stored, then rejected as too "
        "large to scan."
    )
    if direct is not None and direct.verdict_seconds > 0:
        per_gib = direct.verdict_seconds * GIB / direct.bytes
        text += (
            f" clamd's wait after the last byte grows with the size (here "
            f"{direct.verdict_seconds:.1f} s for {_size(direct.bytes)}, about "
            f"{per_gib:.0f} s per GiB); ADX_SCAN_TIMEOUT_SECONDS bounds that wait, so its "
            f"default of 60 s would cut off files of about {60 / per_gib:.1f} GiB and more on "
            f"this machine. The bench sets it to {results.scan_timeout_seconds:.0f} s."
        )
    return text


def _burst_note(results: UploadResults, burst: Burst) -> str:
    files = burst.to_202.summary()
    tenants = burst.tenants_202.summary()
    text = (
        f"{burst.succeeded} of {burst.count} small uploads succeeded"
        + (f" ({burst.failures})" if burst.failures else "")
        + f". With {burst.in_flight} requests in flight all had their 202 after "
        f"{_num(burst.all_202_seconds)} s (p50 {_ms(files.p50_ms)} ms, p99 "
        f"{_ms(files.p99_ms)} ms, {_x(ratio(files.p50_ms, tenants.p50_ms))}x the p50 of "
        f"`POST /v1/tenants` made meanwhile)"
    )
    if not math.isnan(burst.all_done_seconds):
        text += (
            f", and all were scanned, promoted and recorded after "
            f"{burst.all_done_seconds:.1f} s ({burst.count / burst.all_done_seconds:.1f} "
            "uploads/s end to end)"
        )
    text += "."
    temporal, worker = burst.cpu.get("temporal", math.nan), burst.cpu.get("files worker", math.nan)
    if burst.count and not math.isnan(temporal):
        text += (
            f" The workflows, not the API, set that pace: per upload Temporal used "
            f"{temporal / burst.count * 1000:.0f} ms of CPU, the files worker "
            f"{worker / burst.count * 1000:.0f} ms and the API "
            f"{burst.cpu.get('api', math.nan) / burst.count * 1000:.0f} ms, on "
            f"{results.cores} cores."
        )
    peak = burst.rss.get("files worker")
    if peak is not None:
        text += (
            f" The files worker's RSS went from {_mb(peak.baseline)} to {_mb(peak.peak)} MB "
            "during the burst"
            + (
                f", over the {RSS_LIMIT_MB:.0f} MB the 1 GiB case allows."
                if peak.peak / MB >= RSS_LIMIT_MB
                else "."
            )
        )
    text += (
        f" {burst.checked_through_api} operations read back through "
        "`GET /v1/operations/{id}` as succeeded with a `file_id`."
    )
    return text


# -- output -------------------------------------------------------------------------------


SECTIONS = (
    ("Requirements", REQUIREMENT_HEADER, requirement_rows),
    ("The 1 GiB upload, step by step (from the workflow's history)", STEP_HEADER, step_rows),
    ("Throughput, side by side with the same bytes", THROUGHPUT_HEADER, throughput_rows),
    ("Small uploads: time to the 202", LATENCY_HEADER, latency_rows),
    ("Small uploads: ratios, measured side by side", LATENCY_RATIO_HEADER, latency_ratio_rows),
    ("Memory of the processes", RSS_HEADER, rss_rows),
    ("CPU of the processes", CPU_HEADER, cpu_rows),
)


def _timings(results: UploadResults) -> str:
    return ", ".join(f"{k} {v:.0f} s" for k, v in results.seconds.items())


def _progress(large: LargeUpload | None) -> str:
    if large is None or not large.progress_seen:
        return ""
    seen = ", ".join(f"`{step}` at {at:.1f} s" for step, at in large.progress_seen)
    return (
        f"Polling `GET /v1/operations/{{id}}` every 0.5 s ({large.polls} polls) showed the "
        f"steps {seen}."
    )


def terminal(results: UploadResults) -> str:
    out: list[str] = []
    for title, header, rows in SECTIONS:
        out += ["", f"Uploads: {title}", *_plain_table(header, rows(results))]
    progress = _progress(results.large)
    if progress:
        out += ["", progress.replace("`", "")]
    out += ["", *(f"- {note}" for note in [*results.notes, *observations(results)])]
    out.append("upload timings: " + _timings(results))
    return "\n".join(out)


INTRO = """\
{heading}

Measured on {date} on {machine}; {clamd}.
{notes}
MB here is 10^6 bytes. `make bench` runs this part after the others, against the same
PostgreSQL and Temporal; `.venv/bin/python -m bench --uploads-only` runs it alone and
rewrites this section only (`--no-uploads` skips it).

**The stack.** The API (`python -m adx_cli api`), the tenants worker and the files worker
(`python -m adx_cli worker files`), each a process of its own configured through `ADX_*`
variables; files on the local provider in the bench's working directory. The files worker
scans with a real clamd (Debian's clamav-daemon) on a Unix socket, started by the bench
as the tests start it (`tests/support/clamd.py`): its signature database is **the tiny
generated test one, which knows only the EICAR test file**, so the scan time here is
clamd's cost of taking in and walking through the stream (its temporary file, file-type
detection, hashing, the matcher), without what a full signature set adds (none can be
downloaded here). clamd's StreamMaxLength, MaxFileSize and MaxScanSize, and
ADX_SCAN_MAX_BYTES, are {scan_max} bytes (the largest clamd takes);
ADX_SCAN_TIMEOUT_SECONDS is {scan_timeout:.0f}. The tenant is on the enterprise plan
(files up to 5 GiB), seeded through the repositories with one member, who uploads with a
token of the member role.

**The 1 GiB upload.** One `POST /v1/files?name=large.bin` with `Content-Type:
application/octet-stream` and its Content-Length, the body generated by the client in
chunks of 1 MiB and never held whole: one random 1 MiB block, each copy stamped with its
index (so no two chunks are equal). That is cheap to make but **compressible**, which
clamd does not care about. The SHA-256 is computed before the upload, so the client spends
no CPU on it meanwhile, and must equal the one `GET /v1/files/{{id}}` reports at the end.
After the 202 the client polls the operation every 0.5 s until it is over. The steps'
times come from the workflow's history (scheduled, started and closed events; Temporal's
clock is this machine's). RSS of the API and of the files worker is sampled every 0.1 s,
and their kernel high-water mark (VmHWM, reset just before the upload) is read after it,
so a peak between two samples is not missed. The yardsticks on the same disk, before and
after the upload: writing the same amount of generated bytes to a file with fsync (the
least an upload's 202 must do), and copying that file with `shutil.copyfile` and fsync;
and on the same clamd: our clamd client (the one the worker uses) streaming {direct} of
fresh bytes from the bench process (fresh, because clamd answers at once for bytes it has
already found clean).

**Small uploads.** Bodies of {small_kib} KiB, each its own random bytes. First {rounds}
rounds of one client, each a small upload (202), a `POST /v1/tenants` (202) and a `GET
/readyz` in a rotating order: the tenant's 202 starts a workflow as the upload's does, but
carries no body. Then the burst: {count} uploads started at once with at most {in_flight}
requests open; after every {every} uploads the same queue holds a `POST /v1/tenants` and a
`GET /readyz` (the yardstick under the same load; a request's time runs from leaving the
queue to its answer). Each upload's workflow is awaited through Temporal (a long poll, so
the moment it completes is seen), and each operation is read back through the API at the
end. A warm-up of {warm} uploads and one tenant, with `Prefer: wait=30`, runs first and is
not counted."""


def markdown(results: UploadResults) -> str:
    failures = "".join(f"\n{note}\n" for note in results.notes)
    out = [
        INTRO.format(
            heading=HEADING,
            date=results.date,
            machine=results.machine,
            clamd=results.clamd,
            notes=failures,
            scan_max=f"{results.scan_max_bytes:,}",
            scan_timeout=results.scan_timeout_seconds,
            direct=_size(DIRECT_SCAN_SIZE),
            small_kib=SMALL_SIZE // 1024,
            rounds=SIDE_BY_SIDE_ROUNDS,
            count=SMALL_UPLOADS,
            in_flight=IN_FLIGHT,
            every=YARDSTICK_EVERY,
            warm=WARMUP_UPLOADS,
        )
    ]
    for title, header, rows in SECTIONS:
        out += [f"### {title}", "", *_table(header, rows(results)), ""]
        if rows is step_rows:
            progress = _progress(results.large)
            if progress:
                out += [progress, ""]
    notes = observations(results)
    if notes:
        out += ["### What these figures say", "", *(f"- {note}" for note in notes), ""]
    out.append(f"Time taken by this part: {_timings(results)}.")
    if results.exit_codes:
        codes = ", ".join(f"{k} {v}" for k, v in results.exit_codes.items())
        out.append(f"Exit codes at stop: {codes}.")
    return "\n".join(out) + "\n"


_SECTION = PageSection(HEADING)
extract_section = _SECTION.extract
replace_section = _SECTION.replace
