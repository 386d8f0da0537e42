"""What the API benchmarks (issue 6) measured, for bench.api_report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.api_workflows import TickerPlan
from bench.load import PhaseResult
from bench.procstat import CpuSpan
from bench.stats import Series

# Issue 6's targets, and the seed's bounds.
START_P50_MS = 20.0
START_P99_MS = 100.0
SEED_START_MS = 500.0
ADDED_P50_MS = 50.0
ADDED_P99_MS = 100.0
SEED_ADDED_MS = 100.0
SSE_P99_MS = 250.0


@dataclass(frozen=True)
class Mean:
    """A count and the mean of what was summed over it (a histogram's _count and _sum)."""

    count: float
    mean_ms: float


@dataclass(frozen=True)
class Rss:
    first: int
    peak: int
    last: int


@dataclass
class StartRounds:
    """Rounds of time to 202 on ``adx api``, side by side with direct calls."""

    phase: PhaseResult | None = None
    # Inside the API process over the rounds (its /metrics): per request kind, the time
    # from the first middleware to the answer; per Temporal RPC, the client's latency.
    server: dict[str, Mean] = field(default_factory=dict)
    rpc: dict[str, Mean] = field(default_factory=dict)


@dataclass
class StartPart:
    # Each round waits until the workflows it started have finished: a quiet server.
    paced: StartRounds = field(default_factory=StartRounds)
    # Round after round: the server busy with the workflows just started.
    loaded: StartRounds = field(default_factory=StartRounds)
    steps: dict[str, Series] = field(default_factory=dict)


@dataclass
class WaitPart:
    """The same group created directly and by a workflow under ``Prefer: wait``."""

    phase: PhaseResult | None = None
    eager: Counter[str] = field(default_factory=Counter)
    starts: Counter[str] = field(default_factory=Counter)
    rpc: dict[str, Mean] = field(default_factory=dict)


@dataclass
class SsePart:
    plan: TickerPlan
    operations: int
    subscribers: int
    connected: int = 0
    connect: Series = field(default_factory=lambda: Series("time to the open stream"))
    expected: int = 0  # events in all, over every subscriber
    received: int = 0
    duplicates: int = 0
    missing: int = 0
    out_of_order: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    delay: Series = field(default_factory=lambda: Series("progress change → delivery"))
    delay_running: Series = field(
        default_factory=lambda: Series("… of the changes before the first operation closed")
    )
    delay_closing: Series = field(
        default_factory=lambda: Series("… of the changes once operations were closing")
    )
    # The yardstick, under the same load: a progress query's round trip from the bench.
    query: Series = field(default_factory=lambda: Series("progress query round trip"))
    # Streams whose final event came with an id other than the last progress event's + 1.
    short_final: int = 0
    final_delay: Series = field(default_factory=lambda: Series("close → final event"))
    connect_seconds: float = 0.0  # until every stream was open
    streaming_seconds: float = 0.0  # from the go signal to the last stream's end
    cpu: CpuSpan | None = None
    api_rss: Rss | None = None
    # The control: the same operations, nobody following them.
    unwatched_seconds: float = 0.0
    unwatched_cpu: CpuSpan | None = None
    # The API's Temporal RPCs: while the subscribers connected, and while they streamed.
    connect_rpcs: dict[str, float] = field(default_factory=dict)
    stream_rpcs: dict[str, float] = field(default_factory=dict)


@dataclass
class ApiResults:
    date: str
    machine: str
    start: StartPart = field(default_factory=StartPart)
    wait: WaitPart = field(default_factory=WaitPart)
    sse: SsePart | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # CPU seconds of every process of the stack, per part.
    cpu: dict[str, CpuSpan] = field(default_factory=dict)
    # The machine's 1-minute load average as each part began (the machine is shared).
    load: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
