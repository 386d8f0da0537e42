"""Part 2 of the API benchmarks: one simple operation, done directly and as a workflow.

Creating a group is one INSERT (and its audit row). ``POST /v1/groups`` does it directly;
``POST /bench/groups/{variant}`` (bench.api_server) does the same statements in
``bench_group_workflow``'s activity and, under ``Prefer: wait``, answers 200 with the
result. Each round makes one call of every kind in a rotating order, all to the same
process (the bench API, which runs the workflow's worker too, as eager start needs).
``POST /v1/groups`` on ``adx api`` runs in the same rounds, to show that the bench API
answers a direct call as ``adx api`` does.
"""

from __future__ import annotations

import aiohttp

from bench import load
from bench.api_client import Caller, delta, post_group, post_group_workflow, scrape
from bench.api_results import Mean, WaitPart

ROUNDS = 100
BUDGET_SECONDS = 50.0
WAIT_SECONDS = 10
WARMUP_ROUNDS = 3

DIRECT = "POST /v1/groups → 201 (direct)"
DIRECT_ADX_API = "POST /v1/groups → 201 on adx api (for scale)"
ACTIVITY = "workflow: activity"
LOCAL = "workflow: local activity"
EAGER = "workflow: eager start + activity"
EAGER_LOCAL = "workflow: eager start + local activity"
LEAN = "workflow: eager + local, 200 built from the result"
UNSANDBOXED = "workflow: eager + local, no workflow sandbox"
VARIANTS = {
    ACTIVITY: "activity",
    LOCAL: "local",
    EAGER: "eager",
    EAGER_LOCAL: "eager-local",
    LEAN: "eager-local-lean",
    UNSANDBOXED: "eager-local-unsandboxed",
}
WORKFLOW_KINDS = tuple(VARIANTS)
# What the operation_response path of a Prefer: wait makes; the lean one stops at 2.
RPCS = (
    "StartWorkflowExecution",
    "GetWorkflowExecutionHistory",
    "DescribeWorkflowExecution",
)


def _calls(bench: Caller, adx_api: Caller, tag: str) -> dict[str, load.Call]:
    calls = {
        DIRECT: post_group(bench, f"d{tag}"),
        DIRECT_ADX_API: post_group(adx_api, f"a{tag}"),
    }
    for kind, variant in VARIANTS.items():
        calls[kind] = post_group_workflow(bench, variant, kind, tag, WAIT_SECONDS)
    return calls


async def measure(
    bench: Caller, adx_api: Caller, session: aiohttp.ClientSession, part: WaitPart
) -> None:
    warm = await load.run_rounds(
        "warm-up",
        _calls(bench, adx_api, "w"),
        rounds=WARMUP_ROUNDS,
        lanes=1,
        budget_seconds=BUDGET_SECONDS,
    )
    failed = {kind: dict(s.errors) for kind, s in warm.series.items() if s.errors}
    if failed:
        raise RuntimeError(f"the warm-up failed: {failed}")
    bench.eager.clear()
    bench.starts.clear()
    before = await scrape(session, bench.base_url)
    part.phase = await load.run_rounds(
        "wait",
        _calls(bench, adx_api, "m"),
        rounds=ROUNDS,
        lanes=1,
        budget_seconds=BUDGET_SECONDS,
    )
    after = await scrape(session, bench.base_url)
    part.eager = bench.eager.copy()
    part.starts = bench.starts.copy()
    for rpc in RPCS:
        for prefix, label in (
            ("temporal_request", rpc),
            ("temporal_long_request", f"{rpc} (long poll)"),
        ):
            count = delta(after, before, f"{prefix}_latency_count", operation=rpc)
            seconds = delta(after, before, f"{prefix}_latency_sum", operation=rpc)
            if count:
                part.rpc[label] = Mean(count, seconds / count * 1000)
