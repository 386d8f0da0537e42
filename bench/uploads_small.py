"""Small uploads: one client side by side with ``POST /v1/tenants``, then a burst.

Side by side: rounds of three calls in a rotating order (bench.load): a small upload
answered 202, ``POST /v1/tenants`` answered 202 and ``GET /readyz``, one client. The 202
of an upload includes streaming the body into quarantine; the 202 of a tenant does not
carry a body. Both start a workflow and answer without waiting for a worker.

The burst: SMALL_UPLOADS uploads started at once, at most IN_FLIGHT requests open at a
time, each with bytes of its own. After every YARDSTICK_EVERY uploads the same queue holds
a ``POST /v1/tenants`` and a ``GET /readyz``: the yardstick under the same load. Every
upload's workflow is awaited through Temporal (a long poll, so the moment it completes is
seen), and every operation is read back through the API at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import aiohttp
from temporalio.client import Client, WorkflowFailureError

from bench import load
from bench.stats import Series
from bench.uploads_client import UploadApi, describe_failure, small_body
from bench.uploads_meter import PartMeter
from bench.uploads_results import Burst

FILES_202 = "POST /v1/files (small) → 202"
TENANTS_202 = "POST /v1/tenants → 202"
READYZ = "GET /readyz"
IN_FLIGHT = 50
YARDSTICK_EVERY = 10  # uploads between two yardstick requests in the burst
BURST_BUDGET = 120.0
SETTLE_BUDGET = 60.0
CHECK_LANES = 10
ERRORS = (aiohttp.ClientError, TimeoutError, ValueError)


def upload_202(files: UploadApi, size: int, started: list[str]) -> load.Call:
    async def call(index: int) -> str | None:
        status, payload = await files.upload(small_body(size), size, f"seq-{index:05d}.bin")
        if status != 202 or "id" not in payload:
            return describe_failure(status, payload)
        started.append(str(payload["id"]))
        return None

    return call


async def settle(client: Client, operation_ids: list[str]) -> Counter[str]:
    """Wait (bounded) until the operations are over; how they ended."""

    async def one(operation_id: str) -> str:
        try:
            await client.get_workflow_handle(operation_id).result()
        except WorkflowFailureError as failure:
            return f"failed: {failure.cause}"
        return "succeeded"

    try:
        ends = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in operation_ids)), SETTLE_BUDGET
        )
    except TimeoutError:
        return Counter({f"not over within {SETTLE_BUDGET:.0f} s": len(operation_ids)})
    return Counter(ends)


async def side_by_side(
    files: UploadApi, tenants: load.Api, client: Client, size: int, rounds: int
) -> tuple[dict[str, Series], int, Counter[str]]:
    started: list[str] = []
    phase = await load.run_rounds(
        "uploads side by side",
        {
            FILES_202: upload_202(files, size, started),
            TENANTS_202: load.post_202(tenants, "up-seq"),
            READYZ: load.readyz(tenants),
        },
        rounds=rounds,
        lanes=1,
        budget_seconds=60.0,
    )
    return phase.series, phase.rounds_done, await settle(client, started)


class _BurstRun:
    """The burst's requests, all through one gate of ``in_flight``: the uploads, and after
    every YARDSTICK_EVERY of them a ``POST /v1/tenants`` and a ``GET /readyz``, so the
    yardstick waits in the same queue and meets the same load. Times run from passing the
    gate to the answer."""

    def __init__(self, files: UploadApi, tenants: load.Api, client: Client, burst: Burst) -> None:
        self._files = files
        self._tenants = tenants
        self._client = client
        self._burst = burst
        self._gate = asyncio.Semaphore(burst.in_flight)
        self._began = 0.0
        self._pending_202 = burst.count
        self._ends: Counter[str] = Counter()
        self._done_at: list[float] = []
        self.operation_ids: list[str] = []

    async def _upload(self, index: int) -> str | None:
        """The operation's id once the 202 is in, or None (the failure is recorded)."""
        burst = self._burst
        try:
            async with self._gate:
                began = time.perf_counter()
                try:
                    status, payload = await self._files.upload(
                        small_body(burst.size), burst.size, f"burst-{index:05d}.bin"
                    )
                except ERRORS as err:
                    status, payload = 0, {"title": type(err).__name__}
                if status != 202 or "id" not in payload:
                    reason = describe_failure(status, payload)
                    burst.to_202.fail(reason)
                    self._ends[f"no 202: {reason}"] += 1
                    return None
                burst.to_202.add(time.perf_counter() - began)
                return str(payload["id"])
        finally:
            self._pending_202 -= 1
            if self._pending_202 == 0:
                burst.all_202_seconds = time.perf_counter() - self._began

    async def one(self, index: int) -> None:
        operation_id = await self._upload(index)
        if operation_id is None:
            return
        self.operation_ids.append(operation_id)
        try:
            await self._client.get_workflow_handle(operation_id).result()
        except WorkflowFailureError as failure:
            self._ends[f"failed: {failure.cause}"] += 1
            return
        self._ends["succeeded"] += 1
        self._done_at.append(time.perf_counter() - self._began)

    async def yardstick(self, series: Series, call: load.Call, index: int) -> None:
        async with self._gate:
            began = time.perf_counter()
            try:
                failure = await call(index)
            except ERRORS as err:
                failure = type(err).__name__
            if failure is None:
                series.add(time.perf_counter() - began)
            else:
                series.fail(failure)

    async def run(self) -> None:
        burst = self._burst
        post_tenant = load.post_202(self._tenants, "up-burst")
        readyz = load.readyz(self._tenants)
        requests: list[Coroutine[Any, Any, None]] = []
        for index in range(burst.count):
            requests.append(self.one(index))
            if index % YARDSTICK_EVERY == YARDSTICK_EVERY - 1:
                requests.append(self.yardstick(burst.tenants_202, post_tenant, index))
                requests.append(self.yardstick(burst.readyz, readyz, index))
        self._began = time.perf_counter()
        await asyncio.gather(*requests)

    def finish(self) -> None:
        burst = self._burst
        burst.succeeded = self._ends.pop("succeeded", 0)
        burst.failures = dict(self._ends)
        if burst.succeeded == burst.count and self._done_at:
            burst.all_done_seconds = max(self._done_at)


async def burst(
    files: UploadApi,
    tenants: load.Api,
    client: Client,
    *,
    count: int,
    size: int,
    rss_of: dict[str, int],
    cpu_of: dict[str, int],
) -> Burst:
    result = Burst(count=count, size=size, in_flight=IN_FLIGHT)
    run = _BurstRun(files, tenants, client, result)
    async with PartMeter(rss_of, cpu_of) as meter:
        try:
            await asyncio.wait_for(run.run(), BURST_BUDGET)
        except TimeoutError:
            result.failures[f"not over within {BURST_BUDGET:.0f} s"] = 1
    run.finish()
    result.rss, result.cpu = meter.rss, meter.cpu
    result.checked_through_api = await _check(files, run.operation_ids)
    return result


async def _check(files: UploadApi, operation_ids: list[str]) -> int:
    """How many operations the API reports succeeded, with the file's id in the result."""
    gate = asyncio.Semaphore(CHECK_LANES)

    async def one(operation_id: str) -> bool:
        async with gate:
            status, payload = await files.get(f"/v1/operations/{operation_id}")
        result: Any = payload.get("result")
        return (
            status == 200
            and payload.get("status") == "succeeded"
            and isinstance(result, dict)
            and bool(result.get("file_id"))
        )

    return sum(await asyncio.gather(*(one(i) for i in operation_ids)))
