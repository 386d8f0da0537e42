"""HTTP calls of the API benchmarks, as ``bench.load.Call``s: one request, timed by the
caller (bench.load.run_rounds), returning ``None`` or why it failed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.load import Call

EAGER_HEADER = "X-Bench-Eager"  # set by bench.api_server


@dataclass
class Caller:
    """One caller (a bearer token) of one API process."""

    session: aiohttp.ClientSession
    base_url: str
    token: str
    run_tag: str
    # Per call kind: how many workflow starts the server served eagerly, of how many.
    eager: Counter[str] = field(default_factory=Counter)
    starts: Counter[str] = field(default_factory=Counter)
    # The operations its workflow calls started (``POST /v1/users``).
    started_ids: list[str] = field(default_factory=list)

    async def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        async with self.session.post(
            f"{self.base_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
        ) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            return response.status, payload, dict(response.headers)

    def name(self, what: str, index: int) -> str:
        return f"b{self.run_tag}-{what}-{index:05d}"


def _failure(status: int, payload: dict[str, Any]) -> str:
    return f"HTTP {status} {payload.get('status') or payload.get('title')}"


def post_user(caller: Caller, what: str) -> Call:
    """``POST /v1/users`` (user_onboarding_workflow), answered 202."""

    async def call(index: int) -> str | None:
        email = f"{caller.name(what, index)}@bench.example.com"
        status, payload, _ = await caller.post("/v1/users", {"email": email, "name": "Bench"})
        if "id" in payload:
            caller.started_ids.append(str(payload["id"]))
        return None if status == 202 else _failure(status, payload)

    return call


def post_group(caller: Caller, what: str) -> Call:
    """``POST /v1/groups``: the direct call, one INSERT, answered 201."""

    async def call(index: int) -> str | None:
        status, payload, _ = await caller.post("/v1/groups", {"name": caller.name(what, index)})
        return None if status == 201 else _failure(status, payload)

    return call


def post_group_workflow(caller: Caller, variant: str, kind: str, what: str, wait: int) -> Call:
    """``POST /bench/groups/{variant}`` with ``Prefer: wait``: the same group created by a
    workflow, answered 200 with the succeeded operation."""

    async def call(index: int) -> str | None:
        status, payload, headers = await caller.post(
            f"/bench/groups/{variant}",
            {"name": caller.name(f"{what}{variant}", index)},
            {"Prefer": f"wait={wait}"},
        )
        caller.starts[kind] += 1
        if headers.get(EAGER_HEADER) == "true":
            caller.eager[kind] += 1
        if status != 200 or payload.get("status") != "succeeded":
            return _failure(status, payload)
        return None

    return call


def get_ok(session: aiohttp.ClientSession, url: str) -> Call:
    async def call(_: int) -> str | None:
        async with session.get(url) as response:
            await response.read()
            return None if response.status == 200 else f"HTTP {response.status}"

    return call


# -- the API's own /metrics ------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(session: aiohttp.ClientSession, base_url: str) -> Samples:
    """Every sample of a process's ``/metrics`` (ours and the Temporal SDK's)."""
    async with session.get(f"{base_url}/metrics") as response:
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (sample, have), value in samples.items() if sample == name and wanted <= have
    )


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)
