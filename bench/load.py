"""Drive the API over real HTTP: rounds of calls, side by side, bounded in count and time.

A round makes one call of each kind, in an order that rotates from round to round, so
every kind sees the same background (the worker busy with the workflows just started,
the same warm pools) and noise on this shared machine falls on all kinds alike. Lanes run
rounds concurrently; a phase stops at its round count or its time budget, whichever
comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.stats import Series

REQUEST_TIMEOUT = 10.0

# One call: given the round number, do the request and return None, or why it failed.
Call = Callable[[int], Awaitable[str | None]]


@dataclass
class Api:
    session: aiohttp.ClientSession
    base_url: str
    token: str
    run_tag: str
    started_ids: list[str] = field(default_factory=list)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def body(self, slug: str) -> dict[str, Any]:
        return {
            "slug": slug,
            "display_name": f"Bench {slug}",
            "plan": "free",
            "admin": {"email": f"admin@{slug}.example.com", "name": "Bench Admin"},
        }

    async def create_tenant(self, slug: str, wait: int | None = None) -> tuple[int, dict[str, Any]]:
        headers = self._headers({"Prefer": f"wait={wait}"} if wait is not None else None)
        timeout = aiohttp.ClientTimeout(total=(wait or 0) + REQUEST_TIMEOUT)
        async with self.session.post(
            f"{self.base_url}/v1/tenants", json=self.body(slug), headers=headers, timeout=timeout
        ) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            if "id" in payload:
                self.started_ids.append(str(payload["id"]))
            return response.status, payload

    async def get(self, path: str, *, auth: bool = True) -> tuple[int, dict[str, Any]]:
        headers = self._headers() if auth else {}
        async with self.session.get(f"{self.base_url}{path}", headers=headers) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            return response.status, payload

    def slug(self, phase: str, index: int) -> str:
        return f"b{self.run_tag}-{phase}-{index:05d}"


def post_202(api: Api, phase: str) -> Call:
    async def call(index: int) -> str | None:
        status, payload = await api.create_tenant(api.slug(phase, index))
        if status != 202:
            return f"HTTP {status} {payload.get('status') or payload.get('title')}"
        return None

    return call


def post_wait(api: Api, phase: str, wait: int) -> Call:
    async def call(index: int) -> str | None:
        status, payload = await api.create_tenant(api.slug(phase, index), wait=wait)
        if status != 200 or payload.get("status") != "succeeded":
            return f"HTTP {status} {payload.get('status') or payload.get('title')}"
        return None

    return call


def get_operation(api: Api, operation_id: str) -> Call:
    async def call(_: int) -> str | None:
        status, payload = await api.get(f"/v1/operations/{operation_id}")
        if status != 200 or payload.get("status") != "succeeded":
            return f"HTTP {status} {payload.get('status')}"
        return None

    return call


def readyz(api: Api) -> Call:
    async def call(_: int) -> str | None:
        status, payload = await api.get("/readyz", auth=False)
        if status != 200:
            return f"HTTP {status} {payload.get('checks')}"
        return None

    return call


@dataclass
class PhaseResult:
    name: str
    lanes: int
    rounds_planned: int
    rounds_done: int
    wall_seconds: float
    series: dict[str, Series]
    stopped_by_budget: bool


async def run_rounds(
    name: str,
    calls: dict[str, Call],
    *,
    rounds: int,
    lanes: int,
    budget_seconds: float,
) -> PhaseResult:
    series = {kind: Series(kind) for kind in calls}
    kinds = list(calls)
    next_round = 0
    done = 0
    started = time.monotonic()
    deadline = started + budget_seconds

    async def timed(kind: str, index: int) -> None:
        began = time.perf_counter()
        try:
            failure = await calls[kind](index)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            failure = type(err).__name__
        elapsed = time.perf_counter() - began
        if failure is None:
            series[kind].add(elapsed)
        else:
            series[kind].fail(failure)

    async def lane() -> None:
        nonlocal next_round, done
        while next_round < rounds and time.monotonic() < deadline:
            index = next_round
            next_round += 1
            shift = index % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                await timed(kind, index)
            done += 1

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return PhaseResult(
        name=name,
        lanes=lanes,
        rounds_planned=rounds,
        rounds_done=done,
        wall_seconds=time.monotonic() - started,
        series=series,
        stopped_by_budget=done < rounds,
    )
