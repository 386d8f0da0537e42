"""The operator benchmark's (issue 7) part of the terminal output and of docs/benchmarks.md."""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import metadata

from bench import operator_bench, parts
from bench.operator_bench import (
    API_BURST,
    BURST_PART,
    ONE_AT_A_TIME,
    QUIET,
    READY_P50_MS,
    OperatorResults,
    Track,
)
from bench.page_section import PageSection
from bench.stats import Series, percentile, ratio

HEADING = "## Operator (issue 7)"
MIB = 1024 * 1024
OPERATOR = "operator"
EMULATOR = "bench (emulator and client)"


# -- formatting ---------------------------------------------------------------------------


def _ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _x(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else ("+" if value >= 0 else "-") + _ms(abs(value))


def _seconds(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.1f} s"


def _mib(size: int) -> str:
    return f"{size / MIB:,.0f}"


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


def _p(series: Series, p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``series``, in milliseconds."""
    return percentile(sorted(s * 1000 for s in series.seconds), p)


def _max(series: Series) -> float:
    return max(series.seconds) * 1000 if series.seconds else math.nan


def _mean(series: Series) -> float:
    return sum(series.seconds) / len(series.seconds) * 1000 if series.seconds else math.nan


def _errors(series: Series) -> str:
    if not series.errors:
        return "0"
    return f"{sum(series.errors.values())} ({'; '.join(series.errors)})"


def _verdict(value: float, limit: float) -> str:
    if math.isnan(value):
        return "not measured"
    return "met" if value < limit else "**missed**"


# -- rows ---------------------------------------------------------------------------------

REQUIREMENT_HEADER = ["requirement", "measured", "verdict"]


def requirement_rows(results: OperatorResults) -> list[list[str]]:
    rows = []
    limit = f"p50 < {READY_P50_MS / 1000:.0f} s"
    for label, series in (
        (f"Tenant created → status Ready ({limit}), one at a time", results.operator.total),
        (
            f"the same, {results.planned.get(BURST_PART, 0)} Tenants created at once (beyond the "
            "requirement)",
            results.burst.total,
        ),
    ):
        if not series.seconds:
            continue
        rows.append(
            [label,
             f"p50 {_ms(_p(series, 50))} ms, p95 {_ms(_p(series, 95))} ms, max "
             f"{_ms(_max(series))} ms",
             _verdict(_p(series, 50), READY_P50_MS)]
        )  # fmt: skip
    if results.flaps:
        tenants = sum(found.tenants for found in results.flaps.values())
        reverted = sum(found.reverted for found in results.flaps.values())
        rows.append(
            ["Ready, once reached, stays Ready (beyond the requirement)",
             f"{reverted} of {tenants} Tenants went back to another phase",
             "met" if reverted == 0 else "**missed**"]
        )  # fmt: skip
    return rows


LATENCY_HEADER = ["what", "count", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms"]


def _latency(series: Series) -> list[str]:
    return [
        series.name,
        str(len(series.seconds)),
        _errors(series),
        *(_ms(_p(series, p)) for p in (50, 95, 99)),
        _ms(_max(series)),
        _ms(_mean(series)),
    ]


def latency_rows(results: OperatorResults) -> list[list[str]]:
    found = (
        results.operator.total,
        results.api.total,
        results.create,
        results.first_status,
        results.burst.total,
        results.burst_create,
        results.api_burst.total,
    )
    return [_latency(series) for series in found if series.seconds or series.errors]


SIDE_HEADER = ["operator ÷ API", "p50", "p95", "max"]


def side_rows(results: OperatorResults) -> list[list[str]]:
    rows = []
    for label, operator, api in (
        ("one at a time", results.operator.total, results.api.total),
        ("burst", results.burst.total, results.api_burst.total),
    ):
        if not operator.seconds or not api.seconds:
            continue
        pairs = [(_p(operator, p), _p(api, p)) for p in (50, 95)]
        pairs.append((_max(operator), _max(api)))
        rows += [
            [f"{label}: ratio", *(f"{_x(ratio(mine, theirs))}x" for mine, theirs in pairs)],
            [f"{label}: difference, ms", *(_signed(mine - theirs) for mine, theirs in pairs)],
        ]
    return rows


STEPS_HEADER = [
    "step (p50 ms / p95 ms)",
    "operator, one at a time",
    "API, one at a time",
    "operator, burst",
    "API, burst",
]


def _pair(series: Series) -> str:
    if not series.seconds:
        return "—"
    return f"{_ms(_p(series, 50))} / {_ms(_p(series, 95))}"


def step_rows(results: OperatorResults) -> list[list[str]]:
    tracks = (results.operator, results.api, results.burst, results.api_burst)
    if not any(track.run.seconds for track in tracks):
        return []

    def row(label: str, pick: Callable[[Track], Series]) -> list[str]:
        return [label, *(_pair(pick(track)) for track in tracks)]

    return [
        row("until the provisioning workflow started", lambda t: t.before),
        row("the workflow, start to close", lambda t: t.run),
        row("from its close to Ready / the 200", lambda t: t.after),
        row("the whole wait", lambda t: t.total),
    ]


BURST_HEADER = ["burst", "measured"]


def burst_rows(results: OperatorResults) -> list[list[str]]:
    total = results.burst.total
    if not total.seconds and not total.errors:
        return []
    rows = [
        ["Tenants created at once", str(results.planned.get(BURST_PART, 0))],
        ["Ready", f"{len(total.seconds)} (errors: {_errors(total)})"],
        ["create → Ready, p50 / max",
         f"{_ms(_p(total, 50))} / {_ms(_max(total))} ms"],
        ["the first create sent → the last Ready", _seconds(results.burst_all_ready)],
    ]  # fmt: skip
    control = results.api_burst.total
    if control.seconds:
        rows.append(
            ["the control: as many through `POST /v1/tenants` at once, p50 / max to the 200",
             f"{_ms(_p(control, 50))} / {_ms(_max(control))} ms (errors: {_errors(control)})"]
        )  # fmt: skip
    span = results.cpu.get(BURST_PART)
    if span is not None and span.wall > 0:
        cpu = span.cpu.get(OPERATOR, math.nan)
        per = cpu / len(total.seconds) * 1000 if total.seconds else math.nan
        rows.append(
            ["operator CPU over the burst",
             f"{cpu:.2f} s in {span.wall:.1f} s ({cpu / span.wall:.0%} of a core), "
             f"{_ms(per)} ms per Tenant"]
        )  # fmt: skip
    for name, rss in results.burst_rss.items():
        if name in (OPERATOR, EMULATOR):
            rows.append(
                [f"{name} RSS, first / peak / last",
                 f"{_mib(rss.first)} / {_mib(rss.peak)} / {_mib(rss.last)} MiB"]
            )  # fmt: skip
    return rows


FLAP_HEADER = [
    "Tenants created",
    "count",
    "went back from Ready",
    "to",
    "by a stale write",
    "not Ready again for, p50 / max",
    "still not Ready at the end",
    "create → Ready for good, p50 / max",
]


def flap_rows(results: OperatorResults) -> list[list[str]]:
    rows = []
    for part, found in results.flaps.items():
        away = found.away
        stay = found.to_stay
        rows.append(
            [part,
             str(found.tenants),
             f"{found.reverted} ({found.reverts} times)",
             ", ".join(f"{phase} {n}" for phase, n in found.to.items()) or "—",
             str(found.stale),
             f"{_ms(_p(away, 50))} / {_ms(_max(away))} ms" if away.seconds else "—",
             str(found.still_away),
             f"{_ms(_p(stay, 50))} / {_ms(_max(stay))} ms" if stay.seconds else "—"]
        )  # fmt: skip
    return rows


CPU_PROCESSES = (
    OPERATOR,
    "tenants worker",
    "api",
    "temporal",
    "postgres",
    EMULATOR,
)
CPU_HEADER = ["part", "wall s", *(f"{name} CPU s (%)" for name in CPU_PROCESSES)]


def cpu_rows(results: OperatorResults) -> list[list[str]]:
    return parts.cpu_rows(results.cpu, CPU_PROCESSES)


# -- findings -----------------------------------------------------------------------------


def observations(results: OperatorResults) -> list[str]:
    """Findings worded from this run's figures, so they stay true when the page is rewritten."""
    notes = _flap_notes(results)
    notes += _path_notes(results)
    notes += _burst_notes(results)
    quiet = results.cpu.get(QUIET)
    if quiet is not None and quiet.wall > 0 and results.quiet_tenants:
        cpu = quiet.cpu.get(OPERATOR, math.nan)
        notes.append(
            f"Idle with {results.quiet_tenants} Tenants settled, the operator used "
            f"{cpu / quiet.wall:.1%} of a core over {quiet.wall:.0f} s and wrote "
            f"{results.quiet_log_lines:,} log lines ({results.quiet_log_lines / quiet.wall:.0f}"
            " a second): each Tenant's mirror timer still fires every second and returns at "
            "once (the operator drops kopf's per-firing info line), and a settled Tenant is "
            "checked against Temporal once a minute (`operator_resync_seconds`)."
        )
    return notes


def _path_notes(results: OperatorResults) -> list[str]:
    operator, api = results.operator, results.api
    if not operator.total.seconds or not api.total.seconds:
        return []
    op50, api50 = _p(operator.total, 50), _p(api.total, 50)
    notes = [
        f"One at a time, a Tenant is Ready {_ms(op50)} ms after its create at p50; the same "
        f"provisioning through `POST /v1/tenants` with `Prefer: wait` answers in {_ms(api50)} "
        f"ms: the operator path takes {_x(ratio(op50, api50))} times as long "
        f"({_signed(op50 - api50)} ms)."
    ]
    if operator.run.seconds and api.run.seconds:
        notes.append(
            f"By Temporal's clock the provisioning workflow itself runs {_ms(_p(operator.run, 50))}"
            f" ms at p50 when the operator starts it and {_ms(_p(api.run, 50))} ms when the API "
            f"does. Before it, the operator needs {_ms(_p(operator.before, 50))} ms at p50 to "
            "see the new Tenant on its watch and start the workflow (the API "
            f"{_ms(_p(api.before, 50))} ms from the request). After the close, the status "
            f"says Ready {_ms(_p(operator.after, 50))} ms later at p50 and "
            f"{_ms(_max(operator.after))} ms at worst (the API answers "
            f"{_ms(_p(api.after, 50))} ms after it). The handler that started the workflow "
            "waits up to `operator_poll_seconds` for its close and looks again, and a workflow "
            "in flight longer is waited on by the next timer look; that step is one look's "
            "Temporal calls (describe, result, the monitoring query) and the status write."
        )
    if results.first_status.seconds:
        notes.append(
            f"The first status is written {_ms(_p(results.first_status, 50))} ms after the "
            "create at p50 (a workflow that ends within the handler's wait goes straight to "
            "Ready, without a Provisioning write); creating the "
            f"Tenant itself takes {_ms(_p(results.create, 50))} ms (the emulator, in the bench "
            "process)."
        )
    return notes


def _burst_notes(results: OperatorResults) -> list[str]:
    burst, control = results.burst, results.api_burst
    if not burst.total.seconds or not results.operator.total.seconds:
        return []
    b50 = _p(burst.total, 50)
    note = (
        f"{len(burst.total.seconds)} Tenants created at once first read Ready {_ms(b50)} ms "
        f"after their create at p50 and {_ms(_max(burst.total))} ms at worst, "
        f"{_x(ratio(b50, _p(results.operator.total, 50)))} times the p50 of one at a time."
    )
    if control.total.seconds:
        c50 = _p(control.total, 50)
        note += (
            f" As many tenants through `POST /v1/tenants` at once, right after, answered in "
            f"{_ms(c50)} ms at p50 ({_ms(_max(control.total))} ms at worst): under a burst the "
            f"operator path takes {_x(ratio(b50, c50))} times as long ({_signed(b50 - c50)} ms)."
        )
    if burst.run.seconds and control.run.seconds:
        note += (
            f" The workflows ran {_ms(_p(burst.run, 50))} ms at p50 started by the operator "
            f"and {_ms(_p(control.run, 50))} ms started by the API, all at once on one "
            "tenants worker. The operator started them "
            f"{_ms(_p(burst.before, 50))} ms after the create at p50 "
            f"({_ms(_max(burst.before))} ms at worst), and the status read Ready "
            f"{_ms(_p(burst.after, 50))} ms after the close at p50 "
            f"({_ms(_max(burst.after))} ms at worst; the API answered "
            f"{_ms(_p(control.after, 50))} ms after it)."
        )
    notes = [note]
    span = results.cpu.get(BURST_PART)
    if span is not None and span.wall > 0:
        bench = span.cpu.get(EMULATOR, math.nan)
        operator = span.cpu.get(OPERATOR, math.nan)
        busy = sum(v for v in span.cpu.values() if not math.isnan(v)) / span.wall
        control_span = results.cpu.get(API_BURST)
        control_share = (
            control_span.cpu.get(EMULATOR, math.nan) / control_span.wall
            if control_span is not None and control_span.wall > 0
            else math.nan
        )
        notes.append(
            f"Over the burst the processes measured here used {busy:.1f} of the two cores. "
            "The bench process, which serves the emulator (in Python: kmock matches each "
            "request against all the requests served before it, and every write is checked "
            f"against the CRD's schema and CEL rules), used {bench:.1f} s of CPU "
            f"({bench / span.wall:.0%} of a core) against the operator's {operator:.1f} s, "
            f"and {control_share:.0%} of a core during the API's burst: a real API server "
            "would not share these two cores, so the operator's burst figures carry a load "
            "that the API's do not."
        )
    return notes


def _flap_notes(results: OperatorResults) -> list[str]:
    notes = []
    for part, found in results.flaps.items():
        if not found.reverted:
            continue
        phases = ", ".join(f"{phase} ({n})" for phase, n in found.to.items())
        note = (
            f"**{found.reverted} of the {found.tenants} Tenants created {_part(part)} read Ready "
            f"and then another phase again** ({phases}), for {_ms(_p(found.away, 50))} ms at "
            f"p50 and {_ms(_max(found.away))} ms at worst"
        )
        note += (
            f" ({found.still_away} still not Ready when the bench stopped looking)."
            if found.still_away
            else "."
        )
        if found.stale:
            note += (
                f" In {found.stale} of the {found.reverts} cases the write that undid Ready "
                "carried conditions computed before the Ready ones: a status built from an "
                "older look at the workflow landed after the newer one. The operator writes "
                "status with merge patches that carry no resourceVersion, so the later write "
                "wins whatever it saw; and having recorded the Tenant as settled after its "
                "Ready look, it looks again only after `operator_resync_seconds` (60 s)."
            )
        notes.append(note)
    if notes:
        notes.append(
            '"Create → Ready" counts the first moment the stored status read Ready, as issue '
            '7 words it (a client watching the Tenant sees it then); "create → Ready for '
            'good" is the last move to Ready the bench saw.'
        )
    return notes


def _part(part: str) -> str:
    return {BURST_PART: "at once", ONE_AT_A_TIME: "one at a time"}.get(part, f"in the {part}")


# -- output -------------------------------------------------------------------------------

Rows = Callable[[OperatorResults], list[list[str]]]
SECTIONS: tuple[tuple[str, list[str], Rows], ...] = (
    ("Requirements", REQUIREMENT_HEADER, requirement_rows),
    ("Latency (one at a time, then the burst)", LATENCY_HEADER, latency_rows),
    ("The operator path against the API, side by side", SIDE_HEADER, side_rows),
    ("Where the wait goes (by Temporal's clock)", STEPS_HEADER, step_rows),
    ("The burst", BURST_HEADER, burst_rows),
    ("Does Ready stay Ready? (every stored version of each Tenant)", FLAP_HEADER, flap_rows),
    ("CPU per part (percent of one core; the machine has two)", CPU_HEADER, cpu_rows),
)


def _timings(results: OperatorResults) -> str:
    return ", ".join(f"{k} {v:.0f} s" for k, v in results.seconds.items())


def _load(results: OperatorResults) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in results.load.items())


def terminal(results: OperatorResults) -> str:
    out: list[str] = []
    for title, header, rows in SECTIONS:
        found = rows(results)
        if found:
            out += ["", f"Operator: {title}", *_plain_table(header, found)]
    out += ["", *(f"- {note}" for note in [*results.notes, *observations(results)])]
    out.append("operator timings: " + _timings(results))
    return "\n".join(out)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


INTRO = """\
{heading}

Measured on {date} on {machine}; kopf {kopf}, kmock {kmock}. The machine's 1-minute load
average as each part began (other work shares the machine): {load}.
{notes}
`make bench` runs this part last, against the same PostgreSQL and Temporal;
`.venv/bin/python -m bench --operator-only` runs it alone and rewrites this section only
(`--no-operator` skips it and keeps the section the page had).

**The stack.** The operator runs as `python -m adx_cli operator` (what `adx operator`
runs), a process of its own beside the tenants worker and `adx api`, with the same `ADX_*`
environment, standalone (`ADX_OPERATOR_PEERING=""`) and its default pacing: a Tenant with a
workflow in flight is looked at every second (`operator_poll_seconds`), a settled one every
minute (`operator_resync_seconds`). No Kubernetes API server can run here: the operator
logs in with a kubeconfig for the API emulator of the operator tests
(`tests.support.kube`, kmock with the API server's metadata, status subresource, CRD
admission and watches), served over HTTP on 127.0.0.1 from the bench process. Everything
else is what a deployment runs. The part runs in two sessions, each with a fresh emulator
and a freshly started operator (warmed up by {warmup} Tenants): the rounds one at a time,
then the burst. kmock matches every request against all the requests its emulator has
served, so the emulator's cost per request grows through a session ({requests}); one
emulator for the whole part would have charged the burst for the rounds before it.

**One at a time.** {rounds} rounds; each creates one Tenant (a fresh name, plan `free`)
through the emulator's HTTP API and waits until its `status.phase` reads `Ready`, and
provisions one tenant through `POST /v1/tenants` with `Prefer: wait={wait}` as a platform
admin (the time to the 200), in alternating order, so both paths see the same machine.
The Tenant's time runs from the create's answer to the first moment its stored status
says Ready; the bench reads the emulator's store in process every {poll:.0f} ms. Both
paths run the same `tenant_provisioning_workflow` on the same worker; its start and close
(Temporal's describe, on the machine's clock) split each wait into the time before the
workflow, the workflow, and the time after it. {warmup} tenants through each path warm
up first, not counted. Percentiles are nearest-rank: of {rounds} samples in order, p95 is
number {rank95} and p99 number {rank99}.

**The burst.** {burst} Tenants created at once; each one's time from its create's answer
to Ready, and the operator's CPU (psutil, user + system) and RSS (sampled every 0.25 s)
over the burst. Right after, as the control, {burst} tenants through `POST /v1/tenants`
with `Prefer: wait={wait}` at once. Then {quiet:.0f} s with nothing to do.

**Does Ready stay Ready?** The bench reads every stored version of every Tenant it created
(the emulator keeps them all), so a status that reads Ready and then another phase is seen
even if it lasted less than a poll. Each move away from Ready is timed until the status
reads Ready again; at the end the bench waits (at most {settle:.0f} s) until every Tenant
reads Ready. A move away counts as a stale write when the Ready condition it carries is
older (its `lastTransitionTime`) than the one of the Ready status it replaced. It can
happen: the operator writes status with merge patches that carry no `resourceVersion`, so
under load a status computed from an older look at the workflow can land after a newer
one, and a Tenant the operator has recorded as settled is looked at again only after
`operator_resync_seconds`. The table says whether it happened in this run."""


def markdown(results: OperatorResults) -> str:
    failures = "".join(f"\n{note}\n" for note in results.notes)
    rounds = results.planned.get(ONE_AT_A_TIME, operator_bench.TENANTS)
    out = [
        INTRO.format(
            heading=HEADING,
            date=results.date,
            machine=results.machine,
            kopf=_version("kopf"),
            kmock=_version("kmock"),
            load=_load(results) or "—",
            notes=failures,
            rounds=rounds,
            rank95=max(1, math.ceil(0.95 * rounds)),
            rank99=max(1, math.ceil(0.99 * rounds)),
            wait=operator_bench.WAIT_SECONDS,
            poll=operator_bench.POLL_SECONDS * 1000,
            warmup=operator_bench.WARMUP,
            burst=results.planned.get(BURST_PART, operator_bench.BURST),
            quiet=operator_bench.QUIET_SECONDS,
            settle=operator_bench.SETTLE_BUDGET,
            requests=", ".join(
                f"{count:,} requests served in the {name} session"
                for name, count in results.emulator_requests.items()
            )
            or "no session ran",
        ),
        "",
    ]
    for title, header, rows in SECTIONS:
        found = rows(results)
        if found:
            out += [f"### {title}", "", *_table(header, found), ""]
    for stopped in results.stopped_by_budget:
        out += [f"Stopped by its time budget: {stopped}.", ""]
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
