"""Storage benchmarks (issue 4): memory while streaming a large object, migration throughput.

Memory: for each provider, ``bench.stream_child`` puts and gets one large object in a
process of its own against a real server (moto, Azurite, the GCS emulator; a folder for
local). This process samples the child's RSS with psutil from outside, and the child
reports the kernel's high-water mark too. The bytes are generated in chunks, never whole,
and must hash the same on the way up, in the recorded metadata and on the way down.

Throughput: a tenant's 1,000 files of 100 KB on local are moved to S3 (moto) by
file_migration_workflow, run by ``adx worker files`` as a process of its own, timed from
the start to the result. In the same run, against the same moto, a plain loop with the
minio client reads each file and ``put_object``s it into a fresh bucket: the yardstick
the workflow is divided by. The plain loop runs once before and once after the
workflow, so drift in moto (which keeps everything in memory) shows and averages out.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from minio import Minio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from tests.support.azurite import Azurite
from tests.support.gcs_emulator import GcsEmulator
from tests.support.moto_server import ACCESS_KEY, SECRET_KEY, MotoServer
from tests.support.processes import settings_env
from tests.support.storage import with_storage

from adx_core.contracts.storage import (
    FILE_MIGRATION_WORKFLOW,
    FileMigrationRequest,
    MigrationResult,
    migration_workflow_id,
)
from adx_core.db.migrate import upgrade
from adx_core.settings import Settings
from adx_core.storage import LocalStorage, open_storage, tenant_prefix
from adx_core.storage.provider import single_chunk
from adx_core.temporal.client import connect
from bench import stack, storage_steps
from bench.procstat import Meter, cpu_seconds

MIB = 2**20
MB = 1_000_000
GIB = 2**30
# The GCS emulator appends each part of a resumable upload to the bytes it has so far
# (gcp_storage_emulator/storage.py, ``file_content += content``): quadratic, about 70 s
# for 1 GiB here. Its memory figure is taken at a quarter of the size unless asked.
REDUCED = {"gcs": 256 * MIB}
KINDS = ("local", "s3", "azure", "gcs")
MEMORY_LIMIT_MB = 100.0
SAMPLE_SECONDS = 0.02
CHILD_TIMEOUT = 240.0

FILES = 1000
FILE_SIZE = 100_000  # 100 KB
WARMUP_FILES = 20
STEP_FILES = 200
# (batch_size, parallelism): the defaults first, then one wider setting.
CONFIGS = ((100, 8), (250, 16))
RATIO_TARGET = 0.5
OTHERS = "rest of the machine"
MIGRATION_TIMEOUT = 300.0


# -- results ------------------------------------------------------------------------------


@dataclass
class MemoryResult:
    kind: str
    size: int
    reduced: bool
    put_seconds: float = 0.0
    get_seconds: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0  # the highest psutil sample
    hwm: int | None = None  # the kernel's VmHWM, reset at the start of the measured part
    child_cpu: float = 0.0
    server_cpu: float | None = None
    intact: bool = False
    largest_chunk: int = 0
    part_size: int = 0
    error: str | None = None

    @property
    def peak(self) -> int:
        return max(self.rss_peak, self.hwm or 0)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.rss_before) / MB

    @property
    def met(self) -> bool:
        return self.error is None and self.intact and self.growth_mb < MEMORY_LIMIT_MB


@dataclass
class Timed:
    """A copy of the same files, one way or the other."""

    name: str
    files: int
    bytes: int
    seconds: float
    detail: str = ""
    # CPU seconds of the processes involved, while it ran.
    cpu: dict[str, float] = field(default_factory=dict)
    # The requests moto served meanwhile, by method (from its log).
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds if self.seconds else float("nan")

    @property
    def mb_per_second(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds else float("nan")


@dataclass
class ActivityTime:
    """From the workflow's history: how long each activity type waited and ran."""

    count: int = 0
    queued: float = 0.0  # scheduled → started, summed
    ran: float = 0.0  # started → closed, summed


@dataclass
class Migration:
    timed: Timed
    batch_size: int
    parallelism: int
    result: MigrationResult | None
    activities: dict[str, ActivityTime] = field(default_factory=dict)
    workflow_tasks: ActivityTime = field(default_factory=ActivityTime)
    worker_rss_first: int = 0
    worker_rss_peak: int = 0


@dataclass
class StorageResults:
    date: str
    machine: str
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    memory: list[MemoryResult] = field(default_factory=list)
    plain: list[Timed] = field(default_factory=list)
    # Context, not the yardstick: what moto takes when the plain loop runs 8 at once.
    parallel_plain: Timed | None = None
    migrations: list[Migration] = field(default_factory=list)
    # One batch run in-process, one file at a time, call by call (bench.storage_steps).
    steps: storage_steps.BatchSteps | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    xattrs: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def plain_mean(self) -> Timed | None:
        if not self.plain:
            return None
        seconds = sum(t.seconds for t in self.plain) / len(self.plain)
        return Timed("plain (mean)", self.plain[0].files, self.plain[0].bytes, seconds)

    def ratio(self, migration: Migration) -> float:
        plain = self.plain_mean
        if plain is None or not migration.timed.seconds:
            return float("nan")
        return plain.seconds / migration.timed.seconds


# -- servers ------------------------------------------------------------------------------

Server = MotoServer | Azurite | GcsEmulator


def _server(kind: str, workdir: Path) -> Server | None:
    if kind == "s3":
        return MotoServer(workdir / "moto")
    if kind == "azure":
        return Azurite(workdir / "azurite")
    if kind == "gcs":
        return GcsEmulator(workdir / "gcs")
    return None


def _server_process(server: Server | None) -> psutil.Process | None:
    pid = server.pid if server is not None else None
    if pid is None:
        return None
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid)
    return None


def _cpu(proc: psutil.Process | None, with_children: bool = False) -> float:
    if proc is None:
        return float("nan")
    try:
        return cpu_seconds(proc, with_children)
    except psutil.Error:
        return float("nan")


@contextlib.contextmanager
def running(server: Server | None) -> Iterator[None]:
    if server is None:
        yield
        return
    server.start()
    try:
        yield
    finally:
        server.stop()


def _bucket() -> str:
    return f"adx-bench-{uuid.uuid4().hex[:12]}"


# -- memory -------------------------------------------------------------------------------


async def memory(kind: str, size: int, reduced: bool, workdir: Path) -> MemoryResult:
    """One provider's put and get of ``size`` bytes in a child process, its RSS sampled."""
    result = MemoryResult(kind=kind, size=size, reduced=reduced)
    server = _server(kind, workdir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ADX_")}
    env["ADX_STORAGE_ROOT"] = str(workdir / "memory-local")
    env["ADX_STORAGE_PROVIDER"] = kind
    if server is not None:
        env.update(server.env(_bucket()))
    try:
        with running(server):
            await _measure_child(kind, size, env, result, _server_process(server))
    except Exception as exc:  # one provider's failure is reported, the others still run
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def _measure_child(
    kind: str, size: int, env: dict[str, str], result: MemoryResult, server: psutil.Process | None
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.stream_child",
        kind,
        str(size),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        ready = await _line(child, "ready")
        proc = psutil.Process(child.pid)
        result.rss_before = proc.memory_info().rss
        result.part_size = int(ready["part_size"])
        peak = result.rss_before
        server_cpu = _cpu(server)
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        done_task = asyncio.create_task(_line(child, "done"))
        while not done_task.done():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, proc.memory_info().rss)
            await asyncio.wait({done_task}, timeout=SAMPLE_SECONDS)
        done = done_task.result()
        result.server_cpu = _cpu(server) - server_cpu if server is not None else None
        result.rss_peak = peak
        result.hwm = int(done["hwm_kib"]) * 1024 if done.get("hwm_kib") else None
        result.put_seconds = float(done["put_seconds"])
        result.get_seconds = float(done["get_seconds"])
        result.child_cpu = float(done["cpu_seconds"])
        result.largest_chunk = int(done["largest_chunk"])
        result.intact = (
            done["sent_sha256"] == done["got_sha256"] == done["recorded_sha256"]
            and int(done["got_bytes"]) == size
        )
        await asyncio.wait_for(child.wait(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def _line(child: asyncio.subprocess.Process, phase: str) -> dict[str, Any]:
    assert child.stdout is not None
    assert child.stderr is not None
    raw = await asyncio.wait_for(child.stdout.readline(), CHILD_TIMEOUT)
    if not raw:
        await child.wait()
        err = (await child.stderr.read()).decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"the child exited with {child.returncode}: {' | '.join(err[-3:])}")
    message: dict[str, Any] = json.loads(raw)
    if message.get("phase") != phase:
        raise RuntimeError(f"expected {phase!r} from the child, got {message!r}")
    return message


# -- throughput ---------------------------------------------------------------------------


async def _seed(owner: AsyncEngine, local: LocalStorage, files: int) -> tuple[str, list[str]]:
    """An active tenant whose ``files`` files of FILE_SIZE bytes are on local, with records
    (as tests/integration/files/conftest.py seed_tenant makes them)."""
    tenant_id = str(uuid.uuid4())
    prefix = tenant_prefix(tenant_id)
    async with owner.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix,"
                " storage_provider) VALUES (:id, :slug, 'Bench Co', 'pro', 'active', :prefix,"
                " 'local')"
            ),
            {"id": tenant_id, "slug": f"bench-{tenant_id[:8]}", "prefix": prefix},
        )
    await local.ensure_prefix(prefix)
    rows, keys = [], []
    for i in range(files):
        file_id = uuid.uuid4()
        key = f"{prefix}files/{file_id}"
        info = await local.put(key, single_chunk(os.urandom(FILE_SIZE)))
        keys.append(key)
        rows.append(
            {
                "id": file_id,
                "tenant": tenant_id,
                "name": f"file-{i}.bin",
                "size": info.size,
                "sha": info.sha256,
                "key": key,
            }
        )
    async with owner.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO files (id, tenant_id, name, content_type, size_bytes,"
                " checksum_sha256, storage_provider, storage_key, status) VALUES (:id,"
                " :tenant, :name, 'application/octet-stream', :size, :sha, 'local',"
                " :key, 'ready')"
            ),
            rows,
        )
    return tenant_id, keys


def _plain_copy(moto: MotoServer, root: Path, keys: list[str], name: str, threads: int) -> Timed:
    """The yardstick: read each file and put_object it with a plain minio client (its
    defaults) into a fresh bucket; one file after the other unless ``threads`` > 1."""
    client = Minio(moto.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    bucket = _bucket()
    client.make_bucket(bucket)

    def one(key: str) -> int:
        with (root / key).open("rb") as handle:
            data = handle.read()
        client.put_object(bucket, key, io.BytesIO(data), len(data))
        return len(data)

    began = time.perf_counter()
    if threads == 1:
        total = sum(one(key) for key in keys)
    else:
        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(one, keys))
    seconds = time.perf_counter() - began
    how = "one file after the other" if threads == 1 else f"{threads} threads"
    return Timed(name, len(keys), total, seconds, f"{how}, one put_object per file")


async def _migrate(
    client: Client, settings: Settings, tenant_id: str, batch_size: int, parallelism: int
) -> tuple[float, MigrationResult, str]:
    began = time.perf_counter()
    handle = await client.start_workflow(
        FILE_MIGRATION_WORKFLOW,
        FileMigrationRequest(
            tenant_id=tenant_id,
            target="s3",
            batch_size=batch_size,
            parallelism=parallelism,
            migration_id=str(uuid.uuid4()),
        ),
        id=migration_workflow_id(tenant_id),
        task_queue=settings.task_queue("files"),
        result_type=MigrationResult,
    )
    result = await asyncio.wait_for(handle.result(), MIGRATION_TIMEOUT)
    return time.perf_counter() - began, result, handle.id


_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
}


async def _history_times(
    client: Client, workflow_id: str
) -> tuple[dict[str, ActivityTime], ActivityTime]:
    """Per activity type, the time between scheduled, started and closed, from the
    history; and the same for the workflow tasks (the workflow code's own turns)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    times: dict[str, ActivityTime] = {}
    tasks = ActivityTime()
    task_scheduled = task_started = 0.0
    for event in history.events:
        at = event.event_time.ToDatetime().timestamp()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (name, at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = at
        elif kind in _CLOSED:
            attrs = {
                EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed",
                EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed",
                EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out",
                EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled",
            }[kind]
            ref = getattr(event, f"{attrs}_event_attributes").scheduled_event_id
            name, at_scheduled = scheduled[ref]
            at_started = started.get(ref, at_scheduled)
            entry = times.setdefault(name, ActivityTime())
            entry.count += 1
            entry.queued += at_started - at_scheduled
            entry.ran += at - at_started
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            task_scheduled = at
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_started = at
            tasks.queued += at - task_scheduled
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks.count += 1
            tasks.ran += at - task_started
    return times, tasks


class MotoLog:
    """Counts the requests moto served, by method, from its request log."""

    _LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)?(GET|PUT|HEAD|POST|DELETE) ')

    def __init__(self, moto: MotoServer, workdir: Path) -> None:
        self._path = workdir / f"moto-{moto.port}.log"
        self._offset = 0

    def mark(self) -> None:
        self._offset = self._path.stat().st_size if self._path.exists() else 0

    def since_mark(self) -> dict[str, int]:
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            text = handle.read().decode(errors="replace")
        counts: dict[str, int] = {}
        for match in self._LINE.finditer(text):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts


async def throughput(
    st: stack.Stack, results: StorageResults, configs: tuple[tuple[int, int], ...]
) -> None:
    await upgrade(st.settings)
    moto_dir = st.workdir / "moto-throughput"
    moto = MotoServer(moto_dir)
    moto.start()
    owner_url = st.settings.migration_database_url
    if owner_url is None:
        raise RuntimeError("the bench stack sets ADX_MIGRATION_DATABASE_URL; it is missing")
    owner = create_async_engine(owner_url.get_secret_value())
    worker: stack.Child | None = None
    try:
        settings = with_storage(st.settings, moto.env(_bucket()))
        target = open_storage(settings, "s3")
        try:
            await target.ensure_container()
        finally:
            await target.close()
        local = LocalStorage(settings.storage_root, chunk_size=settings.storage_part_size)
        await local.ensure_container()
        results.xattrs = _has_xattrs(settings.storage_root)
        began = time.monotonic()
        worker = await stack.start_worker(st, "files", settings_env(settings))
        results.seconds["files worker start"] = time.monotonic() - began
        client = await connect(st.settings, identity="adx-bench-storage")

        # Warm-up, not counted: the worker's first workflow and activity tasks, its
        # database pool and the lazily imported S3 client.
        warm_tenant, _ = await _seed(owner, local, WARMUP_FILES)
        await _migrate(client, settings, warm_tenant, 100, 8)

        began = time.monotonic()
        tenants = [await _seed(owner, local, FILES) for _ in configs]
        results.seconds["seeding"] = time.monotonic() - began
        keys = tenants[0][1]
        log = MotoLog(moto, moto_dir)
        run = _Runner(moto, settings.storage_root, log, st, worker)
        results.plain.append(await run.plain(keys, "plain loop, before", threads=1))
        for (batch_size, parallelism), (tenant_id, _) in zip(configs, tenants, strict=True):
            try:
                migration = await run.migration(
                    client, settings, tenant_id, batch_size, parallelism
                )
            except Exception as exc:  # reported; the other figures still count
                results.notes.append(
                    f"The migration with batch {batch_size}, parallelism {parallelism} "
                    f"failed: {type(exc).__name__}: {exc}."
                )
                print(f"  migration failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            results.migrations.append(migration)
            print(f"  {migration.timed.name}: {migration.timed.seconds:.1f} s", flush=True)
        results.plain.append(await run.plain(keys, "plain loop, after", threads=1))
        results.parallel_plain = await run.plain(keys, "plain loop, 8 threads", threads=8)
        began = time.monotonic()
        step_tenant, step_keys = await _seed(owner, local, STEP_FILES)
        results.steps = await storage_steps.measure(settings, step_tenant, step_keys, FILE_SIZE)
        results.seconds["batch in-process"] = time.monotonic() - began
    finally:
        if worker is not None:
            code = worker.stop()
            if code != 0:
                results.notes.append(f"the files worker exited with {code}")
        await owner.dispose()
        moto.stop()


class _Runner:
    """Runs one copy, the plain way or through the workflow, and measures around it."""

    def __init__(
        self, moto: MotoServer, root: Path, log: MotoLog, st: stack.Stack, worker: stack.Child
    ) -> None:
        self._moto = moto
        self._root = root
        self._log = log
        self._processes = {
            "worker": psutil.Process(worker.pid),
            "moto": _server_process(moto),
            "postgres": psutil.Process(st.postgres.pid) if st.postgres.pid else None,
            "temporal": psutil.Process(st.temporal.pid) if st.temporal.pid else None,
            "bench client": psutil.Process(),
        }

    def _cpu(self) -> dict[str, float]:
        cpu = {name: _cpu(proc, name == "postgres") for name, proc in self._processes.items()}
        # Everything else the machine ran meanwhile (other work on a shared machine shows).
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        cpu[OTHERS] = busy - sum(value for value in cpu.values() if not math.isnan(value))
        return cpu

    def _spent(self, before: dict[str, float]) -> dict[str, float]:
        after = self._cpu()
        spent = {name: after[name] - before[name] for name in after}
        # The counters tick at different moments: a quiet machine can come out a hair below 0.
        spent[OTHERS] = max(0.0, spent[OTHERS])
        return spent

    async def plain(self, keys: list[str], name: str, *, threads: int) -> Timed:
        before = self._cpu()
        self._log.mark()
        timed = await asyncio.to_thread(_plain_copy, self._moto, self._root, keys, name, threads)
        timed.cpu = self._spent(before)
        timed.requests = self._log.since_mark()
        return timed

    async def migration(
        self, client: Client, settings: Settings, tenant_id: str, batch_size: int, parallelism: int
    ) -> Migration:
        meter = Meter()
        worker = self._processes["worker"]
        if worker is None:
            raise RuntimeError("the files worker is not running")
        meter.watch("worker", worker.pid)
        before = self._cpu()
        self._log.mark()
        meter.start_sampling()
        try:
            seconds, result, workflow_id = await _migrate(
                client, settings, tenant_id, batch_size, parallelism
            )
        finally:
            await meter.stop_sampling()
        spent = self._spent(before)
        requests = self._log.since_mark()
        activities, tasks = await _history_times(client, workflow_id)
        watched = meter.watched[0]
        return Migration(
            timed=Timed(
                f"workflow, batch {batch_size}, parallelism {parallelism}",
                result.files_copied,
                result.bytes_copied,
                seconds,
                cpu=spent,
                requests=requests,
            ),
            batch_size=batch_size,
            parallelism=parallelism,
            result=result,
            activities=activities,
            workflow_tasks=tasks,
            worker_rss_first=watched.rss_first,
            worker_rss_peak=watched.rss_peak,
        )


def _has_xattrs(root: Path) -> bool:
    probe = root / ".xattr-probe"
    try:
        probe.write_bytes(b"")
        os.setxattr(probe, "user.adx.probe", b"1")
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
    return True


# -- the whole storage part ---------------------------------------------------------------


def sizes(full_size: bool) -> dict[str, int]:
    return {kind: GIB if full_size else REDUCED.get(kind, GIB) for kind in KINDS}


async def measure(
    st: stack.Stack,
    results: StorageResults,
    *,
    full_size: bool = False,
    configs: tuple[tuple[int, int], ...] = CONFIGS,
) -> None:
    for kind, size in sizes(full_size).items():
        print(f"storage memory: {kind}, {size / MIB:,.0f} MiB put and get", flush=True)
        began = time.monotonic()
        result = await memory(kind, size, size < GIB, st.workdir)
        results.seconds[f"memory {kind}"] = time.monotonic() - began
        results.memory.append(result)
        if result.error:
            print(f"  {kind} failed: {result.error}", file=sys.stderr, flush=True)
    print(f"storage throughput: {FILES} files of {FILE_SIZE // 1000} KB, local → s3", flush=True)
    began = time.monotonic()
    await throughput(st, results, configs)
    results.seconds["throughput"] = time.monotonic() - began
