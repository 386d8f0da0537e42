"""The API benchmarks' part of the terminal output and of docs/benchmarks.md."""

from __future__ import annotations

import math
from collections.abc import Callable

from bench import api_sse, api_start, api_wait, parts
from bench.api_results import (
    ADDED_P50_MS,
    ADDED_P99_MS,
    SEED_ADDED_MS,
    SEED_START_MS,
    SSE_P99_MS,
    START_P50_MS,
    START_P99_MS,
    ApiResults,
    Mean,
    SsePart,
    StartRounds,
)
from bench.load import PhaseResult
from bench.page_section import PageSection
from bench.stats import Summary, ratio

HEADING = "## API for frontends (issue 6)"
MIB = 1024 * 1024


# -- formatting ---------------------------------------------------------------------------


def _ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _x(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else ("+" if value >= 0 else "-") + _ms(abs(value))


def _verdict(value: float, limit: float) -> str:
    if math.isnan(value):
        return "not measured"
    return "met" if value < limit else "**missed**"


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


def _summaries(phase: PhaseResult | None) -> dict[str, Summary]:
    if phase is None:
        return {}
    return {kind: series.summary() for kind, series in phase.series.items() if series.seconds}


def _added(results: ApiResults, kind: str) -> tuple[float, float]:
    """What the workflow path adds to the direct call, at p50 and at p99."""
    found = _summaries(results.wait.phase)
    if kind not in found or api_wait.DIRECT not in found:
        return math.nan, math.nan
    direct = found[api_wait.DIRECT]
    return found[kind].p50_ms - direct.p50_ms, found[kind].p99_ms - direct.p99_ms


def _mib(size: int) -> str:
    return f"{size / MIB:,.0f}"


# -- rows ---------------------------------------------------------------------------------

REQUIREMENT_HEADER = ["requirement", "measured", "verdict"]


def _both(p50: float, p99: float, p50_limit: float, p99_limit: float) -> str:
    if math.isnan(p50) or math.isnan(p99):
        return "not measured"
    missed = [name for name, value, limit in (("p50", p50, p50_limit), ("p99", p99, p99_limit))
              if value >= limit]  # fmt: skip
    return f"**missed** ({', '.join(missed)})" if missed else "met"


def _rounds(results: ApiResults) -> list[tuple[str, StartRounds]]:
    start = results.start
    return [
        (name, rounds)
        for name, rounds in (("one at a time", start.paced), ("back to back", start.loaded))
        if rounds.phase is not None
    ]


def requirement_rows(results: ApiResults) -> list[list[str]]:
    rows: list[list[str]] = []
    for name, rounds in _rounds(results):
        found = _summaries(rounds.phase)
        slowest = 0.0
        for kind in api_start.WORKFLOW_KINDS:
            if kind not in found:
                continue
            summary = found[kind]
            slowest = max(slowest, summary.max_ms)
            rows.append(
                [f"time to 202 (p50 < {START_P50_MS:.0f} ms, p99 < {START_P99_MS:.0f} ms): "
                 f"`{kind.split(' →')[0]}`, {name}",
                 f"p50 {_ms(summary.p50_ms)} ms, p99 {_ms(summary.p99_ms)} ms",
                 _both(summary.p50_ms, summary.p99_ms, START_P50_MS, START_P99_MS)]
            )  # fmt: skip
        if slowest:
            rows.append(
                [f"seed: workflow start < {SEED_START_MS:.0f} ms, {name}",
                 f"slowest of both {_ms(slowest)} ms", _verdict(slowest, SEED_START_MS)]
            )  # fmt: skip
    for kind in (api_wait.ACTIVITY, api_wait.EAGER_LOCAL, api_wait.LEAN):
        p50, p99 = _added(results, kind)
        if math.isnan(p50):
            continue
        rows.append(
            [f"added by the workflow path under `Prefer: wait` (p50 < {ADDED_P50_MS:.0f} ms, "
             f"p99 < {ADDED_P99_MS:.0f} ms; seed {SEED_ADDED_MS:.0f} ms): "
             f"{kind.removeprefix('workflow: ')}",
             f"{_signed(p50)} ms at p50, {_signed(p99)} ms at p99",
             _both(p50, p99, ADDED_P50_MS, min(ADDED_P99_MS, SEED_ADDED_MS))]
        )  # fmt: skip
    sse = results.sse
    if sse is not None and sse.delay.seconds:
        delay, running = sse.delay.summary(), sse.delay_running.summary()
        complete = sse.received == sse.expected and not sse.duplicates and not sse.out_of_order
        describes = sse.connect_rpcs.get("DescribeWorkflowExecution")
        rows += [
            [f"SSE, {sse.subscribers:,} subscribers on one API process: delay p99 < "
             f"{SSE_P99_MS:.0f} ms (aim)",
             f"p50 {_ms(delay.p50_ms)} ms, p99 {_ms(delay.p99_ms)} ms",
             _verdict(delay.p99_ms, SSE_P99_MS)],
            ["… the same, the changes before the first operation closed (see below)",
             f"p50 {_ms(running.p50_ms)} ms, p99 {_ms(running.p99_ms)} ms",
             _verdict(running.p99_ms, SSE_P99_MS)],
            ["SSE: every event delivered once, in order",
             f"{sse.received:,} of {sse.expected:,} events, {sse.duplicates} duplicates, "
             f"{sse.missing:,} missing",
             "met" if complete else "**missed**"],
            [f"SSE: one upstream watch per operation ({sse.operations}), not per subscriber",
             f"{_count(describes)} describes (one per watch started) for {sse.connected:,} "
             "streams",
             "met" if describes == sse.operations else "**missed**"],
        ]  # fmt: skip
    return rows


def _count(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:,.0f}"


LATENCY_HEADER = ["request", "n", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"]


def _latency_row(found: Summary) -> list[str]:
    return [
        found.name,
        str(found.count),
        str(found.errors),
        _ms(found.p50_ms),
        _ms(found.p90_ms),
        _ms(found.p99_ms),
        _ms(found.max_ms),
    ]


START_HEADER = ["rounds", *LATENCY_HEADER, "inside the API, mean ms", "client side, mean ms"]


def start_rows(results: ApiResults) -> list[list[str]]:
    rows = []
    for name, rounds in _rounds(results):
        assert rounds.phase is not None
        for kind, series in rounds.phase.series.items():
            found = series.summary()
            inside = rounds.server.get(kind, Mean(0, math.nan))
            rows.append([name, *_latency_row(found), _ms(inside.mean_ms), _ms(found.mean_ms)])
        rpc = rounds.rpc.get("StartWorkflowExecution")
        if rpc is not None and rpc.count:
            rows.append(
                [name, "StartWorkflowExecution calls of `adx api` (its /metrics)",
                 f"{rpc.count:,.0f}", "", "", "", "", "", _ms(rpc.mean_ms), ""]
            )  # fmt: skip
    return rows


RATIO_HEADER = ["rounds", "ratio, same rounds", "at p50", "at p99"]


def start_ratio_rows(results: ApiResults) -> list[list[str]]:
    rows = []
    for name, rounds in _rounds(results):
        found = _summaries(rounds.phase)
        for kind in api_start.WORKFLOW_KINDS:
            for yardstick in (api_start.START_RPC, api_start.GROUP_201, api_start.HEALTHZ):
                if kind in found and yardstick in found:
                    rows.append(
                        [
                            name,
                            f"{kind} ÷ {yardstick}",
                            _x(ratio(found[kind].p50_ms, found[yardstick].p50_ms)),
                            _x(ratio(found[kind].p99_ms, found[yardstick].p99_ms)),
                        ]
                    )
    return rows


STEP_HEADER = ["step", "n", "p50 ms", "p99 ms"]


def step_rows(results: ApiResults) -> list[list[str]]:
    start = results.start
    rows = []
    for step, series in start.steps.items():
        found = series.summary()
        rows.append([step, str(found.count), _ms(found.p50_ms), _ms(found.p99_ms)])
    in_path = [start.steps[s].summary().p50_ms for s in api_start.IN_THE_202 if s in start.steps]
    if in_path:
        rows.append(["sum of the p50s of the 202's steps (token, body, lookup, start)", "",
                     _ms(sum(in_path)), ""])  # fmt: skip
    for name, rounds in _rounds(results):
        tenant = _summaries(rounds.phase).get(api_start.TENANT_202)
        if tenant is not None:
            rows.append([f"for comparison: {api_start.TENANT_202} over HTTP, {name}", "",
                         _ms(tenant.p50_ms), _ms(tenant.p99_ms)])  # fmt: skip
    return rows


WAIT_HEADER = [
    *LATENCY_HEADER,
    "added vs direct at p50 ms",
    "added at p99 ms",
    "÷ direct at p50",
    "started eagerly",
]


def wait_rows(results: ApiResults) -> list[list[str]]:
    found = _summaries(results.wait.phase)
    direct = found.get(api_wait.DIRECT)
    rows = []
    for kind, summary in found.items():
        eager = "—"
        if kind in api_wait.WORKFLOW_KINDS:
            eager = f"{results.wait.eager[kind]} of {results.wait.starts[kind]}"
        added = ["", "", ""]
        if direct is not None and kind != api_wait.DIRECT:
            added = [
                _signed(summary.p50_ms - direct.p50_ms),
                _signed(summary.p99_ms - direct.p99_ms),
                _x(ratio(summary.p50_ms, direct.p50_ms)),
            ]
        rows.append([*_latency_row(summary), *added, eager])
    return rows


BOUGHT_HEADER = ["change", "from → to", "bought at p50 ms", "bought at p99 ms"]
_STEPS_BOUGHT = (
    ("local activity", api_wait.ACTIVITY, api_wait.LOCAL),
    ("eager start", api_wait.ACTIVITY, api_wait.EAGER),
    ("eager start + local activity", api_wait.ACTIVITY, api_wait.EAGER_LOCAL),
    ("the 200 built from the result (no describe, no 2nd read)", api_wait.EAGER_LOCAL,
     api_wait.LEAN),
    ("no workflow sandbox", api_wait.EAGER_LOCAL, api_wait.UNSANDBOXED),
)  # fmt: skip


def bought_rows(results: ApiResults) -> list[list[str]]:
    found = _summaries(results.wait.phase)
    rows = []
    for change, before, after in _STEPS_BOUGHT:
        if before in found and after in found:
            rows.append(
                [
                    change,
                    f"{before.removeprefix('workflow: ')} → {after.removeprefix('workflow: ')}",
                    _ms(found[before].p50_ms - found[after].p50_ms),
                    _ms(found[before].p99_ms - found[after].p99_ms),
                ]
            )
    return rows


RPC_HEADER = ["Temporal RPC of the bench API (client and worker)", "calls", "mean ms"]


def rpc_rows(results: ApiResults) -> list[list[str]]:
    return [
        [name, f"{mean.count:,.0f}", _ms(mean.mean_ms)] for name, mean in results.wait.rpc.items()
    ]


SSE_HEADER = ["", "value"]


def sse_rows(results: ApiResults) -> list[list[str]]:
    sse = results.sse
    if sse is None:
        return []
    plan = sse.plan
    per = sse.subscribers // max(sse.operations, 1)
    rows = [
        ["subscribers", f"{sse.subscribers:,}: {per} on each of {sse.operations} operations"],
        ["each operation",
         f"{plan.ticks} ticks of {plan.tick_seconds} s (a step every {plan.ticks_per_step}), "
         f"{sse.expected // max(sse.subscribers, 1)} events with the final one"],
        ["streams opened", f"{sse.connected:,} of {sse.subscribers:,} in "
         f"{sse.connect_seconds:.1f} s; one stream's open p50 "
         f"{_ms(sse.connect.summary().p50_ms)} ms, p99 {_ms(sse.connect.summary().p99_ms)} ms"],
        ["events received / expected", f"{sse.received:,} / {sse.expected:,}"],
        ["duplicates / missing / out of order",
         f"{sse.duplicates:,} / {sse.missing:,} / {sse.out_of_order:,}"],
        ["streams whose final event skipped progress events", f"{sse.short_final:,}"],
        ["stream failures", ", ".join(f"{k}: {v}" for k, v in sse.failures.items()) or "none"],
    ]  # fmt: skip
    for series in (sse.delay, sse.delay_running, sse.delay_closing, sse.final_delay, sse.query):
        found = series.summary()
        errors = f", {found.errors} errors" if found.errors else ""
        rows.append(
            [
                f"{series.name} (n {found.count:,}{errors})",
                f"p50 {_ms(found.p50_ms)} ms, p90 {_ms(found.p90_ms)} ms, "
                f"p99 {_ms(found.p99_ms)} ms, max {_ms(found.max_ms)} ms",
            ]
        )
    delay, query = sse.delay.summary(), sse.query.summary()
    rows.append(
        [
            "delay ÷ progress query round trip",
            f"{_x(ratio(delay.p50_ms, query.p50_ms))} at p50, "
            f"{_x(ratio(delay.p99_ms, query.p99_ms))} at p99",
        ]
    )
    rows.append(
        [
            "streaming (go signal → last stream closed)",
            f"{sse.streaming_seconds:.1f} s "
            f"(the tickers' own plan: {plan.ticks * plan.tick_seconds:.0f} s)",
        ]
    )
    control = sse.unwatched_cpu
    if control is not None:
        rows.append(
            [
                "control: the same operations, nobody following",
                f"{sse.unwatched_seconds:.1f} s; CPU "
                + ", ".join(
                    f"{name} {seconds:.1f} s"
                    for name, seconds in control.cpu.items()
                    if seconds >= 0.05
                ),
            ]
        )
    if sse.cpu is not None:
        wall = sse.cpu.wall
        for name, seconds in sse.cpu.cpu.items():
            share = f"{seconds / wall * 100:.0f}%" if wall > 0 else "—"
            extra = ""
            if name == "api" and sse.received:
                extra = f", {seconds / sse.received * 1000:.2f} ms per delivered event"
            rows.append([f"CPU of {name} while streaming", f"{seconds:.1f} s ({share}){extra}"])
    if sse.api_rss is not None:
        rss = sse.api_rss
        rows.append(
            ["API RSS while streaming, first / peak / last",
             f"{_mib(rss.first)} / {_mib(rss.peak)} / {_mib(rss.last)} MiB"]
        )  # fmt: skip
    for label, rpcs in (
        ("while connecting", sse.connect_rpcs),
        ("while streaming", sse.stream_rpcs),
    ):
        if rpcs:
            calls = ", ".join(f"{name} {count:,.0f}" for name, count in rpcs.items())
            rows.append([f"the API's Temporal RPCs {label}", calls])
    return rows


CPU_PROCESSES = (
    "api",
    "tenants worker",
    "users worker",
    "bench api",
    "temporal",
    "postgres",
    "bench client",
)
CPU_HEADER = ["part", "wall s", *(f"{name} CPU s (%)" for name in CPU_PROCESSES)]


def cpu_rows(results: ApiResults) -> list[list[str]]:
    return parts.cpu_rows(results.cpu, CPU_PROCESSES)


# -- findings -----------------------------------------------------------------------------


def observations(results: ApiResults) -> list[str]:
    """Findings worded from this run's figures, so they stay true when the page is rewritten."""
    notes: list[str] = []
    notes += _start_notes(results)
    notes += _wait_notes(results)
    if results.sse is not None:
        notes += _sse_notes(results.sse)
    return notes


def _rounds_note(results: ApiResults, name: str, rounds: StartRounds) -> str | None:
    found = _summaries(rounds.phase)
    tenant, user = found.get(api_start.TENANT_202), found.get(api_start.USER_202)
    alone, group = found.get(api_start.START_RPC), found.get(api_start.GROUP_201)
    inside = rounds.server.get(api_start.TENANT_202)
    rpc = rounds.rpc.get("StartWorkflowExecution")
    if tenant is None or user is None or alone is None or group is None:
        return None
    text = (
        f"{name.capitalize()}, the 202 of `POST /v1/tenants` takes {_ms(tenant.p50_ms)} ms at "
        f"p50 and {_ms(tenant.p99_ms)} ms at p99 (`POST /v1/users` {_ms(user.p50_ms)} and "
        f"{_ms(user.p99_ms)} ms), the direct `POST /v1/groups` {_ms(group.p50_ms)} ms at p50, "
        f"and a `start_workflow` alone from the bench {_ms(alone.p50_ms)} ms at p50 "
        f"({_ms(alone.p99_ms)} ms at p99)."
    )
    if inside is not None and rpc is not None and rpc.count:
        text += (
            f" Inside `adx api` the tenants route takes {_ms(inside.mean_ms)} ms on average, "
            f"and its StartWorkflowExecution calls {_ms(rpc.mean_ms)} ms."
        )
    cpu = results.cpu.get(f"time to 202, {name}")
    if cpu is not None and cpu.wall > 0:
        busy = sorted(cpu.cpu.items(), key=lambda item: -item[1])[:3]
        text += (
            " The busiest processes: "
            + ", ".join(
                f"{process} {seconds / cpu.wall:.0%} of a core" for process, seconds in busy
            )
            + "."
        )
    return text


def _start_notes(results: ApiResults) -> list[str]:
    notes = [
        note
        for name, rounds in _rounds(results)
        if (note := _rounds_note(results, name, rounds)) is not None
    ]
    paced = _summaries(results.start.paced.phase).get(api_start.START_RPC)
    loaded = _summaries(results.start.loaded.phase).get(api_start.START_RPC)
    if paced is not None and loaded is not None:
        notes.append(
            f"The start alone is {_x(ratio(loaded.p50_ms, paced.p50_ms))} times slower back "
            "to back than one at a time (p50): the 202 waits for a Temporal server busy with "
            "the workflows the earlier rounds started, on the same two cores as the workers "
            "running them."
        )
    steps = {step: series.summary().p50_ms for step, series in results.start.steps.items()}
    if not steps:
        return notes
    lookup = steps.get(api_start.LOOKUP, math.nan)
    select_one = steps.get(api_start.SELECT_ONE, math.nan)
    with_codec = steps.get(api_start.START_API_CLIENT, math.nan)
    bare = steps.get(api_start.START_BARE_CLIENT, math.nan)
    info = steps.get(api_start.SYSTEM_INFO, math.nan)
    in_path = [steps[s] for s in api_start.IN_THE_202 if s in steps]
    notes.append(
        f"Step by step, with nothing else running, the 202's steps add up to "
        f"{_ms(sum(in_path))} ms at p50. `start_workflow` takes {_ms(with_codec)} ms with the "
        f"API's client and {_ms(bare)} ms with a bare one (the codec and interceptors: "
        f"{_signed(with_codec - bare)} ms), where GetSystemInfo, the cheapest gRPC call to the "
        f"same server, takes {_ms(info)} ms: the rest is the server persisting the new "
        f"execution. The slug lookup takes {_ms(lookup)} ms, and a bare `SELECT 1` through "
        f"the same session factory {_ms(select_one)} ms (pool checkout with its pre-ping, "
        "BEGIN, the statement, ROLLBACK: four round trips to PostgreSQL)."
    )
    return notes


def _wait_notes(results: ApiResults) -> list[str]:
    found = _summaries(results.wait.phase)
    direct = found.get(api_wait.DIRECT)
    on_api = found.get(api_wait.DIRECT_ADX_API)
    if direct is None:
        return []
    notes = []
    if on_api is not None:
        notes.append(
            f"The bench API answers the direct `POST /v1/groups` in {_ms(direct.p50_ms)} ms at "
            f"p50 where `adx api` takes {_ms(on_api.p50_ms)} ms in the same rounds: the worker "
            "beside it does not slow its direct calls much."
        )
    added = {kind: _added(results, kind) for kind in api_wait.WORKFLOW_KINDS if kind in found}
    if added:
        best = min(added, key=lambda kind: added[kind][0])
        notes.append(
            "Added to the direct call by the workflow path at p50: "
            + ", ".join(f"{kind.removeprefix('workflow: ')} {_signed(v[0])} ms" for kind, v in
                        added.items())
            + f". The least is `{best}`."
        )  # fmt: skip
    eager, starts = results.wait.eager, results.wait.starts
    asked = [kind for kind in api_wait.WORKFLOW_KINDS if "eager" in kind and starts[kind]]
    others = [kind for kind in api_wait.WORKFLOW_KINDS if kind not in asked and starts[kind]]
    if asked:
        notes.append(
            f"The dev server started {sum(eager[k] for k in asked)} of the "
            f"{sum(starts[k] for k in asked)} workflows that asked for it eagerly (the answer "
            "to StartWorkflowExecution carried the first workflow task; the server's "
            "`system.enableEagerWorkflowStart` is on by default) and "
            f"{sum(eager[k] for k in others)} of the {sum(starts[k] for k in others)} others."
        )
    return notes


def _sse_notes(sse: SsePart) -> list[str]:
    notes = []
    delay = sse.delay.summary()
    describes = sse.connect_rpcs.get("DescribeWorkflowExecution", math.nan)
    queries = sse.stream_rpcs.get("QueryWorkflow", math.nan)
    polls = sse.stream_rpcs.get(
        "GetWorkflowExecutionHistory (long poll)",
        sse.stream_rpcs.get("GetWorkflowExecutionHistory", math.nan),
    )
    changes = sse.operations * (sse.plan.ticks + 1)
    notes.append(
        f"{sse.connected:,} streams on {sse.operations} operations cost the API "
        f"{_count(describes)} describes: one watch per operation. While streaming it made "
        f"{_count(queries)} progress queries and {_count(polls)} history long polls for the "
        f"{changes:,} workflow tasks that changed progress ({_x(queries / changes)} and "
        f"{_x(polls / changes)} per change), whatever the number of subscribers "
        f"({sse.subscribers // max(sse.operations, 1)} per operation here)."
    )
    query = sse.query.summary()
    notes.append(
        f"A change reached the subscribers {_ms(delay.p50_ms)} ms after the workflow made it "
        f"at p50 and {_ms(delay.p99_ms)} ms at p99; a progress query's round trip alone, "
        f"under the same load, took {_ms(query.p50_ms)} ms at p50 and {_ms(query.p99_ms)} ms "
        f"at p99. The tickers needed {sse.streaming_seconds:.1f} s for "
        f"{sse.plan.ticks * sse.plan.tick_seconds:.0f} s of timers: "
        f"{(sse.streaming_seconds / sse.plan.ticks - sse.plan.tick_seconds) * 1000:.0f} ms "
        "a tick more (the first pause, and the workflow tasks between the timers)."
    )
    running, closing = sse.delay_running.summary(), sse.delay_closing.summary()
    if running.count and closing.count:
        notes.append(
            f"Before the first operation closed, a change took {_ms(running.p50_ms)} ms at p50 "
            f"and {_ms(running.p99_ms)} ms at p99 to arrive; once operations were closing, "
            f"{_ms(closing.p50_ms)} and {_ms(closing.p99_ms)} ms. A watch takes the events "
            "from the history's memo entries, so a closing workflow needs no query (which "
            "for a closed workflow would mean replaying its history on a worker); the "
            "final event waits only for a describe and the result."
        )
    control, followed = sse.unwatched_cpu, sse.cpu
    if control is not None and followed is not None:
        extra = {
            name: followed.cpu.get(name, 0.0) - control.cpu.get(name, 0.0)
            for name in ("temporal", "bench api")
        }
        notes.append(
            f"With nobody following them, the same operations took {sse.unwatched_seconds:.0f} "
            f"s (against {sse.streaming_seconds:.0f} s followed). Following them cost the "
            f"Temporal server {extra['temporal']:.1f} s of CPU more "
            f"({extra['temporal'] / changes * 1000:.1f} ms per change: mostly the history long "
            f"polls) and the worker {extra['bench api']:.1f} s more (the few queries a watch "
            "makes before the first memo entry shows), besides the API's own "
            f"{followed.cpu.get('api', 0.0):.1f} s."
        )
    if sse.short_final:
        final = sse.final_delay.summary()
        notes.append(
            f"**{sse.short_final:,} streams got their final event without the progress "
            "events before it** (the final event took the id of the first one missing). "
            "When the workflow has closed, the watch's last progress query must replay the "
            "workflow on a worker; with many operations closing at once those replays queue "
            "past the query's 1 s timeout, and `OperationWatch._run` finishes with what it has "
            f"instead of asking again. The final event came {_ms(final.p50_ms)} ms after the "
            f"close at p50 ({_ms(final.p99_ms)} ms at p99)."
        )
    return notes


# -- output -------------------------------------------------------------------------------

Rows = Callable[[ApiResults], list[list[str]]]
SECTIONS: tuple[tuple[str, list[str], Rows], ...] = (
    ("Requirements", REQUIREMENT_HEADER, requirement_rows),
    ("Time to 202 on `adx api` (one client)", START_HEADER, start_rows),
    ("Time to 202: ratios, measured side by side", RATIO_HEADER, start_ratio_rows),
    ("Where the 202 goes", STEP_HEADER, step_rows),
    ("The same group, directly and by a workflow under `Prefer: wait`", WAIT_HEADER, wait_rows),
    ("What eager start and local activities bought", BOUGHT_HEADER, bought_rows),
    ("The bench API's Temporal RPCs in those rounds", RPC_HEADER, rpc_rows),
    ("SSE: 1,000 subscribers on one API process", SSE_HEADER, sse_rows),
    ("CPU per part (percent of one core; the machine has two)", CPU_HEADER, cpu_rows),
)


def _timings(results: ApiResults) -> str:
    return ", ".join(f"{k} {v:.0f} s" for k, v in results.seconds.items())


def _load(results: ApiResults) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in results.load.items() if "drain" not in k)


def terminal(results: ApiResults) -> str:
    out: list[str] = []
    for title, header, rows in SECTIONS:
        out += ["", f"API: {title}", *_plain_table(header, rows(results))]
    out += ["", *(f"- {note}" for note in [*results.notes, *observations(results)])]
    out.append("api timings: " + _timings(results))
    return "\n".join(out)


INTRO = """\
{heading}

Measured on {date} on {machine}. The machine's 1-minute load average as each part began
(other work shares the machine): {load}.
{notes}
`make bench` runs this part after the others, against the same PostgreSQL and Temporal;
`.venv/bin/python -m bench --api-only` runs it alone and rewrites this section only
(`--no-api` skips it and keeps the section the page had).

**The stack.** `adx api`, the tenants worker and the users worker, each a process of its
own, plus the **bench API** (`python -m bench.api_server`): the API built with
`adx_api.app.create_app` and one bench-only route, `POST /bench/groups/{{variant}}`, with a
worker for the bench's workflows (`bench/api_workflows.py`) in the same process, sharing
its Temporal client. Eager workflow start needs exactly that: the answer to
StartWorkflowExecution carries the first workflow task to a worker on the client that
started it. Every API process runs with `ADX_RATE_LIMIT_REQUESTS=0`, since the per-tenant
limit (1,200 a minute) would refuse this load. The callers are a platform admin (tenants)
and the admin of an enterprise tenant seeded through the repositories (users, groups,
operations). Their tokens carry no session, so the session check a session token adds
(one query) is not in these figures.

**Time to 202.** Rounds of one client; a round makes, in a rotating order,
`POST /v1/tenants` and `POST /v1/users` (202; each starts a workflow that the tenants or
users worker then runs), the direct `POST /v1/groups` (one INSERT, 201), `GET /healthz`
(HTTP and the middlewares: no authentication, no I/O), and a `start_workflow` alone from
the bench with a client configured as the API's (the tenants route's argument, search
attributes and memo, on a task queue no worker polls; terminated afterwards): what the
start costs at that moment. First {paced} rounds **one at a time**: each round waits until
the workflows it started have finished, so every request meets a server with nothing else
to do. Then {loaded} rounds **back to back**: the server and the workers are busy with the
workflows the earlier rounds started (about two a round). "Inside the API" is the mean of
the API's own request histogram (`/metrics`, read before and after), from its first
middleware to its answer. **Where the 202 goes** times the steps of `POST /v1/tenants`
from the bench process, {steps} times each with the API's configuration and nothing else
running: the token check, the body, the slug lookup and, for scale, `SELECT 1` through the
same session factory; `start_workflow` of the unpolled workflow with the API's client
(AES-GCM codec, interceptors) and with a bare client; and GetSystemInfo, the cheapest call
to the Temporal frontend.

**Direct against workflow.** Creating a group is one INSERT and its audit row. `POST
/v1/groups` does it directly; `bench_group_workflow` does the same statements with the same
models in its one activity (`bench/api_activities.py`), started by the bench route and
answered through `adx_api.routes.common.operation_response` under `Prefer: wait={wait}`
(200 with the group), as every workflow route is. Variants: a normal activity, a local
activity (run inside the workflow task), eager start, and eager start with a local
activity; then that last one again with the 200 built from the result the wait returned
(without the describe and the second read of the history that `operation_response`
makes), and once more run by a worker without the workflow sandbox
(`UnsandboxedWorkflowRunner`). {wait_rounds}
rounds, each one call of every kind in a rotating order, all to the bench API; `POST
/v1/groups` on `adx api` in the same rounds shows that the bench API answers direct calls as
`adx api` does. "Started eagerly" counts the answers whose StartWorkflowExecution reply
carried the first workflow task.

**SSE.** {operations} `bench_ticker_workflow` operations of the enterprise tenant (with its
TenantId search attribute) run on the bench API's worker. Each waits for a `go` signal,
then {ticks} times starts or finishes a step or moves its counters
(`adx_workers.common.progress.ProgressTracker`) and sleeps {tick} s (`workflow.sleep`; the
dev server's timers last a second at least: a 0.5 s sleep takes one). A first pause in a
small activity spreads the operations over a second. Ticks of 0.4 s (an activity that waits,
about 85 progress changes a second in all) kept the dev server busy on a whole core with the
fifty workflows alone, nobody following them, so the delay would have measured a saturated
Temporal server rather than the API. {per_operation} subscribers per operation open `GET
/v1/operations/{{id}}/events` on `adx api` with the admin's token (at most {connecting}
connections being opened at once) and read it to the end with
`adx_core.client.sse.SseParser`; the bench sends `go` once every stream is open. The delay
of an event is its receive time less its `at`, the workflow's time of the change (the
Temporal server runs on this machine, so both clocks are the same); for the final event,
less the operation's `updated_at` (its close). Every stream must carry the ids 1..N and the
final event N+1, once each, in order. The yardstick: every {query_every} s the bench asks
one ticker for its progress (the query a watch would make without the memo) and times the
round trip. Then,
as a control, the same {operations} operations run once more with nobody following them.
The API's Temporal RPCs come from its `/metrics`; CPU and RSS from psutil (RSS every
0.25 s)."""


def markdown(results: ApiResults) -> str:
    failures = "".join(f"\n{note}\n" for note in results.notes)
    out = [
        INTRO.format(
            heading=HEADING,
            date=results.date,
            machine=results.machine,
            load=_load(results) or "—",
            notes=failures,
            paced=api_start.PACED_ROUNDS,
            loaded=api_start.LOADED_ROUNDS,
            steps=api_start.STEP_ITERATIONS,
            wait=api_wait.WAIT_SECONDS,
            wait_rounds=api_wait.ROUNDS,
            operations=api_sse.OPERATIONS,
            tick=api_sse.TICK_SECONDS,
            ticks=api_sse.TICKS,
            per_operation=api_sse.PER_OPERATION,
            connecting=api_sse.CONNECTING,
            query_every=api_sse.QUERY_EVERY,
        ),
        "",
    ]
    for title, header, rows in SECTIONS:
        found = rows(results)
        if found:
            out += [f"### {title}", "", *_table(header, found), ""]
    phases = (results.start.paced.phase, results.start.loaded.phase, results.wait.phase)
    for phase in phases:
        if phase is not None and phase.stopped_by_budget:
            out += [
                f"The `{phase.name}` rounds hit their time budget after {phase.rounds_done} of "
                f"{phase.rounds_planned}.",
                "",
            ]
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
