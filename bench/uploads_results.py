"""What the upload benchmarks (issue 5) measure, as data: filled by bench.uploads_large
and bench.uploads_small, turned into tables by bench.uploads_report."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from bench.stats import Series

MB = 1_000_000
MIB = 2**20
GIB = 2**30

# Issue 5's acceptance.
RSS_LIMIT_MB = 250.0
LARGE_LIMIT_SECONDS = 300.0  # the seed allows 5 minutes for 1 GiB
LARGE_AIM_SECONDS = 60.0  # what this bench aims for on this machine
SMALL_UPLOADS = 200


@dataclass
class Plain:
    """A yardstick measured in the same run: the same bytes without the product."""

    name: str
    bytes: int
    seconds: float
    detail: str = ""

    @property
    def mb_per_second(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else math.nan


@dataclass
class DirectScan:
    """clamd's INSTREAM of a fresh 1 GiB straight from the bench process."""

    bytes: int
    send_seconds: float  # until the last byte was handed to clamd
    verdict_seconds: float  # from the last byte to clamd's answer
    verdict: str
    clamd_cpu: float

    @property
    def seconds(self) -> float:
        return self.send_seconds + self.verdict_seconds


@dataclass
class Step:
    """One activity of file_upload_workflow, from its history; times in seconds since
    the client began the POST."""

    name: str
    scheduled: float
    started: float
    closed: float
    attempts: int = 1
    outcome: str = "completed"

    @property
    def queued(self) -> float:
        return self.started - self.scheduled

    @property
    def ran(self) -> float:
        return self.closed - self.started


@dataclass
class Rss:
    """A process's RSS around one measured part, in bytes."""

    baseline: int = 0  # just before
    sampled_peak: int = 0  # the highest psutil sample meanwhile
    hwm: int | None = None  # the kernel's VmHWM, reset just before

    @property
    def peak(self) -> int:
        return max(self.sampled_peak, self.hwm or 0)


@dataclass
class LargeUpload:
    size: int
    sha256: str
    http_status: int = 0
    seconds_to_202: float = math.nan  # the body streamed into quarantine, the workflow started
    workflow_started: float = math.nan  # since the POST began, from the history
    workflow_closed: float = math.nan
    client_saw_done: float = math.nan  # the first poll that said so
    status: str = ""
    error: str | None = None
    file_status: str = ""
    recorded_sha256: str = ""
    recorded_size: int = 0
    steps: list[Step] = field(default_factory=list)
    # (progress step, seconds since the POST began) as polling the operation first saw them
    progress_seen: list[tuple[str, float]] = field(default_factory=list)
    polls: int = 0
    rss: dict[str, Rss] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded" and self.error is None

    @property
    def intact(self) -> bool:
        return self.recorded_sha256 == self.sha256 and self.recorded_size == self.size

    @property
    def total_seconds(self) -> float:
        """End to end: from the first byte sent to the workflow's completion."""
        return self.workflow_closed

    @property
    def mb_per_second(self) -> float:
        total = self.total_seconds
        return self.size / MB / total if total > 0 else math.nan


@dataclass
class Burst:
    """SMALL_UPLOADS uploads started at once, at most ``in_flight`` requests open."""

    count: int
    size: int
    in_flight: int
    to_202: Series = field(default_factory=lambda: Series("POST /v1/files → 202"))
    # The yardstick, made by one client meanwhile: the same API under the same load.
    tenants_202: Series = field(default_factory=lambda: Series("POST /v1/tenants → 202"))
    readyz: Series = field(default_factory=lambda: Series("GET /readyz"))
    all_202_seconds: float = math.nan
    all_done_seconds: float = math.nan
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    checked_through_api: int = 0  # GET /v1/operations/{id}: succeeded with a file_id
    rss: dict[str, Rss] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class UploadResults:
    date: str
    machine: str
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    clamd: str = ""
    scan_max_bytes: int = 0
    scan_timeout_seconds: float = 0.0
    large: LargeUpload | None = None
    plain: list[Plain] = field(default_factory=list)
    direct_scan: DirectScan | None = None
    sequential: dict[str, Series] = field(default_factory=dict)
    sequential_rounds: int = 0
    burst: Burst | None = None
    exit_codes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def plain_mean(self, prefix: str) -> Plain | None:
        runs = [p for p in self.plain if p.name.startswith(prefix)]
        if not runs:
            return None
        seconds = sum(p.seconds for p in runs) / len(runs)
        return Plain(f"{prefix} (mean)", runs[0].bytes, seconds)
