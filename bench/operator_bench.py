"""Operator benchmark (issue 7): from a Tenant being created to its status Ready.

The operator runs as ``python -m adx_cli operator``, a process of its own like the other
roles, with the stack's ``ADX_*`` environment, standalone (``ADX_OPERATOR_PEERING=""``) and
the default pacing (a resource with a workflow in flight is looked at every
``operator_poll_seconds``; a settled one every ``operator_resync_seconds``). It logs in
with a kubeconfig pointing at the Kubernetes API emulator (``tests.support.kube``), which
serves from this process's event loop on 127.0.0.1: no API server can run here, and
everything else is what a deployment has. The tenants worker and ``adx api`` run as
``bench.stack`` starts them.

The bench creates Tenants through the emulator's HTTP API and reads every stored version
of each one in process every ``POLL_SECONDS``: when ``status.phase`` first reads Ready, and
whether it ever reads another phase again. The same rounds make a tenant through
``POST /v1/tenants`` with ``Prefer: wait`` (the provisioning workflow as the API runs it),
one of each per round in alternating order, so both see the same machine. Then a burst of
Tenants created at once, and as many tenants through the API at once as its control. Each
provisioning workflow's start and close times (Temporal's describe, on this machine's
clock) split either wait into before the workflow, the workflow, and after it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from temporalio.client import Client
from temporalio.service import RPCError
from tests.support.kube import KubeHandle, serve_kubernetes
from tests.support.processes import settings_env

from adx_cli.devstack.net import free_port
from adx_core.contracts.tenants import provisioning_workflow_id
from adx_core.temporal.client import connect
from bench import callers, load, stack
from bench.api_results import Rss
from bench.parts import run_part
from bench.procstat import CpuSpan, Meter
from bench.stats import Series

# Issue 7: "from a Tenant being created to status Ready, p50 under 3 s".
READY_P50_MS = 3_000.0

TENANTS = 30  # one at a time, through each path
BURST = 20  # created at once
WARMUP = 2  # through each path, not counted
WAIT_SECONDS = 30
POLL_SECONDS = 0.02
READY_TIMEOUT = 60.0  # one Tenant's wait for Ready, one at a time
ROUNDS_BUDGET = 150.0  # no round starts after it
BURST_BUDGET = 60.0  # each burst Tenant's wait for Ready (they all start at once)
QUIET_SECONDS = 5.0
SETTLE_BUDGET = 90.0  # at the end, for every Tenant to read Ready again
# The parts the Tenants are created in.
WARM_UP, ONE_AT_A_TIME, BURST_PART = "warm-up", "one at a time", "burst"
WARM_UP_AGAIN, API_BURST, QUIET = "warm-up, fresh emulator", "burst through the API", "quiet"
# Each session has a fresh emulator and operator. kmock matches every request against all
# the requests its emulator has served (a cost that grows with each one), so one emulator
# for the whole run would charge the burst for the rounds before it.
ROUNDS_SESSION, BURST_SESSION = "rounds", "burst"
SESSIONS = (ROUNDS_SESSION, BURST_SESSION)
NAMESPACE = "default"
TENANT_RESOURCE = "adx.dev/v1alpha1/tenants"


@dataclass
class Track:
    """One way to a provisioned tenant: the whole wait, and its parts by Temporal's clock."""

    total: Series
    before: Series = field(default_factory=lambda: Series("until the workflow started"))
    run: Series = field(default_factory=lambda: Series("the workflow, start to close"))
    after: Series = field(default_factory=lambda: Series("from the close to the answer"))


def _track(name: str) -> Track:
    return Track(Series(name))


@dataclass
class OperatorResults:
    date: str
    machine: str
    planned: dict[str, int] = field(default_factory=dict)
    # One at a time, side by side.
    operator: Track = field(default_factory=lambda: _track("operator: create → Ready"))
    api: Track = field(
        default_factory=lambda: _track(f"API: POST /v1/tenants, Prefer: wait={WAIT_SECONDS}")
    )
    create: Series = field(default_factory=lambda: Series("the Tenant create request"))
    first_status: Series = field(default_factory=lambda: Series("create → first status"))
    # The burst.
    burst: Track = field(default_factory=lambda: _track("burst: create → Ready"))
    burst_create: Series = field(default_factory=lambda: Series("burst: the create request"))
    burst_all_ready: float = float("nan")  # the first create sent → the last Ready
    # The same number of tenants through the API at once, right after: the control.
    api_burst: Track = field(
        default_factory=lambda: _track(f"burst: POST /v1/tenants, Prefer: wait={WAIT_SECONDS}")
    )
    quiet_tenants: int = 0
    quiet_log_lines: int = 0  # what the operator logged while it had nothing to do
    # Per part: Tenants whose status went from Ready back to another phase.
    flaps: dict[str, Flaps] = field(default_factory=dict)
    emulator_requests: dict[str, int] = field(default_factory=dict)  # served, per session
    cpu: dict[str, CpuSpan] = field(default_factory=dict)
    burst_rss: dict[str, Rss] = field(default_factory=dict)
    stopped_by_budget: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)


@dataclass
class Flaps:
    """The Tenants of one part whose status, once Ready, read another phase again."""

    tenants: int = 0
    reverted: int = 0  # Tenants that went back at least once
    reverts: int = 0
    stale: int = 0  # reverts by a status computed before the Ready one (older conditions)
    to: Counter[str] = field(default_factory=Counter)  # the phases they went back to
    away: Series = field(default_factory=lambda: Series("not Ready again, for"))
    still_away: int = 0  # still not Ready when the bench stopped looking
    # Create → the latest move to Ready, for the Tenants that read Ready at the end.
    to_stay: Series = field(default_factory=lambda: Series("create → Ready for good"))


def planned(scale: float) -> dict[str, int]:
    """The counts for ``--quick`` / ``--rounds-scale``: a burst of at least 5."""
    return {ONE_AT_A_TIME: max(1, round(TENANTS * scale)), BURST_PART: max(5, round(BURST * scale))}


# -- following Tenants in the emulator --------------------------------------------------


@dataclass
class Followed:
    """One Tenant's status as the bench saw it change, every stored version of it read
    (a status that lasted less than a poll is still seen, at the next poll)."""

    part: str
    created: float  # perf_counter at the create's answer
    ready: asyncio.Future[float]  # perf_counter when status first read Ready
    seen: int = 0  # versions of the object read so far
    phase: str | None = None
    first_status: float | None = None
    # Each time status went from Ready back to another phase: when, until when (None:
    # still not Ready when the bench stopped looking), and whether the write that undid
    # Ready had been computed before the Ready one (its conditions' transition time is
    # older: a stale write landing late).
    reverts: list[Revert] = field(default_factory=list)
    last_ready: float | None = None  # the latest move to Ready
    ready_since: str = ""  # that version's Ready condition lastTransitionTime (RFC 3339, UTC)


@dataclass
class Revert:
    """One move of a Tenant's status away from Ready (perf_counter times)."""

    at: float
    to: str | None
    stale: bool
    until: float | None = None


@dataclass(frozen=True)
class Created:
    name: str
    uid: str
    sent: float  # perf_counter when the request went out
    answered: float  # perf_counter at the answer
    answered_wall: float  # time.time() at the answer


@dataclass(frozen=True)
class Waited:
    """One wait for a provisioned tenant, and the workflow that provisioned it."""

    workflow_id: str
    began_wall: float  # time.time() when the wait began
    seconds: float
    ended: float  # perf_counter when it ended


class ReadyWatch:
    """Creates Tenants and follows, from the emulator's store in this process, each one's
    ``status.phase`` until the bench stops: when it first reads Ready (to within
    ``POLL_SECONDS``), and whether it ever goes back."""

    def __init__(self, kube: KubeHandle) -> None:
        self._kube = kube
        self._resource = kube.emulator.resource_for(TENANT_RESOURCE)
        self.followed: dict[str, Followed] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for followed in self.followed.values():
            if followed.ready.done() and not followed.ready.cancelled():
                followed.ready.exception()  # retrieved: a failure nobody waited for is no error
            followed.ready.cancel()

    async def create(self, name: str, part: str) -> Created:
        sent = time.perf_counter()
        stored = await self._kube.apply(_manifest(name))
        answered, wall = time.perf_counter(), time.time()
        ready: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.followed[name] = Followed(part=part, created=answered, ready=ready)
        return Created(name, str(stored["metadata"]["uid"]), sent, answered, wall)

    async def ready(self, created: Created, within: float) -> tuple[float, float | None]:
        """Seconds from the create's answer to Ready, and to the first status (if seen)."""
        followed = self.followed[created.name]
        try:
            at = await asyncio.wait_for(asyncio.shield(followed.ready), within)
        except TimeoutError:
            raise TimeoutError(f"not Ready in {within:.0f} s: {self.shown(created.name)}") from None
        first = followed.first_status
        return at - created.answered, None if first is None else first - created.answered

    def not_ready(self) -> list[str]:
        """The followed Tenants that were Ready once and read another phase now."""
        return [
            name
            for name, followed in self.followed.items()
            if followed.last_ready is not None and followed.phase != "Ready"
        ]

    def stored(self) -> int:
        """How many Tenants the emulator holds."""
        return sum(
            1
            for (resource, _, _), obj in self._kube.emulator.objects.items()
            if resource == self._resource and not obj.deleted
        )

    def shown(self, name: str) -> str:
        """The phase and the Ready condition's reason that ``name``'s status shows."""
        versions = self._versions_from(name, 0)
        status = _status_of(versions[-1]) if versions else {}
        reason = _ready_condition(status).get("reason")
        return f"phase {status.get('phase')}, Ready condition {reason}"

    def _versions_from(self, name: str, seen: int) -> list[dict[str, Any] | None]:
        """The Tenant's stored versions after the first ``seen``, oldest first (None
        marks a deletion)."""
        key = (self._resource, NAMESPACE, name)
        objects = self._kube.emulator.objects
        if key not in objects:
            return []
        history = objects[key].history
        if len(history) <= seen:
            return []
        return [None if v is None else v.raw for v in history[seen:]]

    async def _loop(self) -> None:
        while True:
            now = time.perf_counter()
            for name, followed in self.followed.items():
                for version in self._versions_from(name, followed.seen):
                    _advance(followed, _status_of(version), now)
                    followed.seen += 1
            await asyncio.sleep(POLL_SECONDS)


def _status_of(version: dict[str, Any] | None) -> dict[str, Any]:
    status = None if version is None else version.get("status")
    return status if isinstance(status, dict) else {}


def _ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return found[0] if found and isinstance(found[0], dict) else {}


def _advance(followed: Followed, status: dict[str, Any], now: float) -> None:
    """Take one stored version of the Tenant's status into its timeline."""
    phase = status.get("phase")
    if phase == followed.phase:
        return
    if phase and followed.first_status is None:
        followed.first_status = now
    since = str(_ready_condition(status).get("lastTransitionTime", ""))
    if phase == "Ready":
        followed.last_ready, followed.ready_since = now, since
        if followed.reverts and followed.reverts[-1].until is None:
            followed.reverts[-1].until = now
        if not followed.ready.done():
            followed.ready.set_result(now)
    elif followed.phase == "Ready":
        # RFC 3339 times in UTC, to the second, compare as strings.
        stale = bool(since) and since < followed.ready_since
        followed.reverts.append(Revert(now, phase, stale))
    elif phase == "Failed" and not followed.ready.done():
        followed.ready.set_exception(RuntimeError(f"Failed: {status.get('failure')}"))
    followed.phase = phase


def _manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "adx.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "displayName": f"Bench {name}",
            "plan": "free",
            "admin": {"email": f"admin@{name}.example.com", "name": "Bench Admin"},
        },
    }


# -- the part ---------------------------------------------------------------------------


@dataclass
class _Context:
    st: stack.Stack
    client: Client
    watch: ReadyWatch
    tenants: load.Api
    tag: str
    results: OperatorResults
    operator: stack.Child

    def check_operator(self) -> None:
        """Fail the part at once if the operator has exited, rather than at every timeout."""
        code = self.operator.proc.poll()
        if code is not None:
            raise RuntimeError(f"the operator exited ({code}):\n{self.operator.tail()}")

    def name(self, what: str, index: int) -> str:
        return f"b{self.tag}-{what}-{index:05d}"


async def measure(st: stack.Stack, results: OperatorResults, scale: float = 1.0) -> None:
    results.planned = planned(scale)
    began = time.monotonic()
    await stack.start_roles(st)
    try:
        results.seconds["worker and api start"] = time.monotonic() - began
        client = await connect(st.settings, identity="adx-bench-operator")
        timeout = aiohttp.ClientTimeout(total=load.REQUEST_TIMEOUT + WAIT_SECONDS)
        tag = secrets.token_hex(3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            token = callers.platform_admin_token(st.settings)
            tenants = load.Api(session, st.api_url, token, run_tag=tag)
            for name in SESSIONS:
                await _session(st, _Shared(client, tenants, tag, results), name)
    finally:
        results.exit_codes.update(stack.stop_roles(st))


@dataclass(frozen=True)
class _Shared:
    """What the sessions share: the Temporal client, the API caller, the names' tag."""

    client: Client
    tenants: load.Api
    tag: str
    results: OperatorResults


async def _session(st: stack.Stack, shared: _Shared, name: str) -> None:
    """A fresh emulator and operator, the session's parts, then both stopped (the operator
    first: the emulator must still answer while it shuts down)."""
    results = shared.results
    began = time.monotonic()
    async with serve_kubernetes() as kube:
        operator: stack.Child | None = None
        try:
            operator = await _start_operator(st, kube)
            results.seconds[f"emulator and operator start ({name})"] = time.monotonic() - began
            watch = ReadyWatch(kube)
            watch.start()
            try:
                ctx = _Context(
                    st, shared.client, watch, shared.tenants, shared.tag, results, operator
                )
                await _run_parts(ctx, name)
                results.flaps.update(flaps(watch))
                results.emulator_requests[name] = len(kube.emulator.requests)
            finally:
                await watch.stop()
        finally:
            if operator is not None:
                results.exit_codes[f"operator ({name})"] = await asyncio.to_thread(operator.stop)


async def _start_operator(st: stack.Stack, kube: KubeHandle) -> stack.Child:
    port = free_port()
    env = {
        **settings_env(st.settings),
        "KUBECONFIG": str(kube.write_kubeconfig(st.workdir / "kubeconfig")),
        "ADX_OPERATOR_PEERING": "",  # standalone: one replica
        "ADX_OPERATOR_HTTP_HOST": "127.0.0.1",
        "ADX_OPERATOR_HTTP_PORT": str(port),
    }
    return await stack.start_process(
        st,
        "operator",
        [sys.executable, "-m", "adx_cli", "operator"],
        env,
        f"http://127.0.0.1:{port}/readyz",
    )


def _meter(pids: dict[str, int]) -> Meter:
    meter = Meter()
    for name, pid in pids.items():
        meter.watch(name, pid, with_children=name == "postgres")
    return meter


def _pids(ctx: _Context) -> dict[str, int]:
    st = ctx.st
    assert st.temporal.pid is not None
    assert st.postgres.pid is not None
    return {
        "operator": ctx.operator.pid,
        "tenants worker": st.child("worker").pid,
        "api": st.child("api").pid,
        "temporal": st.temporal.pid,
        "postgres": st.postgres.pid,
        "bench (emulator and client)": os.getpid(),
    }


async def _run_parts(ctx: _Context, session: str) -> None:
    """The session's parts, each timed and metered; a failed part is reported and the
    next one still runs (but nothing runs after a failed warm-up)."""
    results = ctx.results
    pids = _pids(ctx)
    meter = _meter(pids)
    logs = [ctx.operator, ctx.st.child("worker"), ctx.st.child("api")]

    async def part(name: str, run: Callable[[], Awaitable[None]]) -> bool:
        return await run_part(results, meter, logs, "operator", name, run)

    async def burst() -> None:
        burst_meter = _meter(pids)
        burst_meter.start_sampling()
        try:
            await _burst(ctx, results.planned[BURST_PART])
        finally:
            await burst_meter.stop_sampling()
            results.burst_rss = {
                w.name: Rss(w.rss_first, w.rss_peak, w.rss_last) for w in burst_meter.watched
            }

    async def quiet() -> None:
        results.quiet_tenants = ctx.watch.stored()
        before = _lines(ctx.operator)
        await asyncio.sleep(QUIET_SECONDS)
        results.quiet_log_lines = _lines(ctx.operator) - before

    warm = WARM_UP if session == ROUNDS_SESSION else WARM_UP_AGAIN
    if not await part(warm, lambda: _warm_up(ctx, warm)):
        return
    if session == ROUNDS_SESSION:
        await part(ONE_AT_A_TIME, lambda: _rounds(ctx, results.planned[ONE_AT_A_TIME]))
    else:
        await part(BURST_PART, burst)
        await part(API_BURST, lambda: _api_burst(ctx, results.planned[BURST_PART]))
        await part(QUIET, quiet)
    if ctx.watch.not_ready():
        await part(f"until every Tenant reads Ready again ({session})", lambda: _settle(ctx))


def _lines(child: stack.Child) -> int:
    """How many lines ``child`` has logged so far."""
    with child.log_path.open("rb") as log:
        return sum(1 for _ in log)


# -- one tenant through each path ---------------------------------------------------------


async def _through_operator(
    ctx: _Context,
    name: str,
    part: str,
    track: Track,
    create: Series,
    *,
    within: float = READY_TIMEOUT,
    first_status: Series | None = None,
) -> Waited | None:
    """Create ``name``, wait (up to ``within`` seconds) for Ready and record the wait;
    what the wait was, for ``_split``, or None if the Tenant did not get Ready."""
    try:
        created = await ctx.watch.create(name, part)
    except Exception as exc:  # the emulator refused it: recorded, not raised
        create.fail(_reason(exc))
        track.total.fail("create failed")
        return None
    create.add(created.answered - created.sent)
    try:
        seconds, first = await ctx.watch.ready(created, within)
    except (TimeoutError, RuntimeError) as exc:
        track.total.fail(_reason(exc))
        return None
    track.total.add(seconds)
    if first is not None and first_status is not None:
        first_status.add(first)
    return Waited(
        provisioning_workflow_id(created.uid),
        created.answered_wall,
        seconds,
        created.answered + seconds,
    )


async def _through_operator_split(ctx: _Context, name: str) -> None:
    """One Tenant of the rounds, its wait split right away (outside any timed wait)."""
    results = ctx.results
    waited = await _through_operator(
        ctx,
        name,
        ONE_AT_A_TIME,
        results.operator,
        results.create,
        first_status=results.first_status,
    )
    if waited is not None:
        await _split(ctx.client, waited, results.operator)


async def _through_api(ctx: _Context, name: str, track: Track) -> Waited | None:
    """``POST /v1/tenants`` with ``Prefer: wait``; record the time to the 200. What the
    wait was, for ``_split``, or None if it failed."""
    sent, wall = time.perf_counter(), time.time()
    try:
        status, payload = await ctx.tenants.create_tenant(name, WAIT_SECONDS)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        track.total.fail(_reason(exc))
        return None
    seconds = time.perf_counter() - sent
    if status != 200 or payload.get("status") != "succeeded":
        track.total.fail(f"HTTP {status} {payload.get('status') or payload.get('title')}")
        return None
    track.total.add(seconds)
    return Waited(str(payload["id"]), wall, seconds, sent + seconds)


async def _through_api_split(ctx: _Context, name: str) -> None:
    """One tenant of the rounds through the API, its wait split right away."""
    waited = await _through_api(ctx, name, ctx.results.api)
    if waited is not None:
        await _split(ctx.client, waited, ctx.results.api)


async def _split(client: Client, waited: Waited, track: Track) -> None:
    """Split the wait (by the wall clock) at the workflow's start and close; a wait whose
    workflow Temporal cannot describe stays whole."""
    try:
        description = await client.get_workflow_handle(waited.workflow_id).describe()
    except RPCError:
        return
    start, close = description.start_time, description.close_time
    if close is None:
        return
    track.before.add(start.timestamp() - waited.began_wall)
    track.run.add((close - start).total_seconds())
    track.after.add(waited.began_wall + waited.seconds - close.timestamp())


# -- the parts ----------------------------------------------------------------------------


async def _warm_up(ctx: _Context, part: str) -> None:
    """The operator's first watch events and handlers, the worker's first tasks, the API's
    pools; not counted. Fails the part if a tenant does not get through."""
    operator, api = _track("warm-up operator"), _track("warm-up api")
    create = Series("warm-up create")
    what = "w" if part == WARM_UP else "x"  # slugs are unique across the sessions
    for index in range(WARMUP):
        ctx.check_operator()
        await _through_operator(ctx, ctx.name(f"op{what}", index), part, operator, create)
        await _through_api(ctx, ctx.name(f"ap{what}", index), api)
    for track in (operator, api):
        if track.total.errors:
            raise RuntimeError(f"{track.total.name}: {dict(track.total.errors)}")


async def _rounds(ctx: _Context, count: int) -> None:
    """One Tenant through the operator and one through the API per round, in alternating
    order; bounded by ``count`` and ``ROUNDS_BUDGET``."""
    results = ctx.results
    deadline = time.monotonic() + ROUNDS_BUDGET
    for index in range(count):
        if time.monotonic() >= deadline:
            results.stopped_by_budget.append(f"one at a time: {index} of {count} rounds")
            return
        ctx.check_operator()
        # Coroutines, awaited one after the other: the order alternates from round to round.
        steps = [
            _through_operator_split(ctx, ctx.name("op", index)),
            _through_api_split(ctx, ctx.name("api", index)),
        ]
        for step in steps if index % 2 == 0 else reversed(steps):
            await step


async def _burst(ctx: _Context, count: int) -> None:
    """``count`` Tenants created at once; each one's time from its create's answer to
    Ready. A Tenant not Ready within ``BURST_BUDGET`` counts as failed. The workflows'
    times are asked for once all are done, so that the describes do not load the burst."""
    results = ctx.results
    ctx.check_operator()
    began = time.perf_counter()
    done = await asyncio.gather(
        *(
            _through_operator(
                ctx,
                ctx.name("burst", index),
                BURST_PART,
                results.burst,
                results.burst_create,
                within=BURST_BUDGET,
            )
            for index in range(count)
        )
    )
    waits = [waited for waited in done if waited is not None]
    if waits and not results.burst.total.errors:
        results.burst_all_ready = max(waited.ended for waited in waits) - began
    for waited in waits:
        await _split(ctx.client, waited, results.burst)


async def _settle(ctx: _Context) -> None:
    """Wait (bounded by ``SETTLE_BUDGET``) until every Tenant reads Ready, so that a
    status that went back shows for how long."""
    deadline = time.monotonic() + SETTLE_BUDGET
    while ctx.watch.not_ready() and time.monotonic() < deadline:
        ctx.check_operator()
        await asyncio.sleep(0.5)


def flaps(watch: ReadyWatch) -> dict[str, Flaps]:
    """Per part, what became of the Tenants after they first read Ready."""
    found: dict[str, Flaps] = {}
    end = time.perf_counter()
    for followed in watch.followed.values():
        part = found.setdefault(followed.part, Flaps())
        part.tenants += 1
        part.reverted += bool(followed.reverts)
        for revert in followed.reverts:
            part.reverts += 1
            part.stale += revert.stale
            part.to[str(revert.to)] += 1
            part.away.add((revert.until or end) - revert.at)
            part.still_away += revert.until is None
        if followed.phase == "Ready" and followed.last_ready is not None:
            part.to_stay.add(followed.last_ready - followed.created)
    return found


async def _api_burst(ctx: _Context, count: int) -> None:
    """The control: ``count`` tenants through ``POST /v1/tenants`` with ``Prefer: wait``,
    all at once; each one's time to its 200."""
    track = ctx.results.api_burst
    done = await asyncio.gather(
        *(_through_api(ctx, ctx.name("apiburst", index), track) for index in range(count))
    )
    for waited in done:
        if waited is not None:
            await _split(ctx.client, waited, track)


# -- failures -----------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]
