"""A fake usage activity, registered under the real one's name, that plays a script."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.contracts.monitoring import (
    COLLECT_TENANT_USAGE_ACTIVITY,
    TENANT_GONE,
    ResourceAmounts,
    UsageRequest,
    UsageSample,
)

QUOTAS = ResourceAmounts(storage_bytes=1000, files=1000, users=5, db_rows=10_000)


def storage_percent(call: int) -> int:
    """Storage use, in percent of its quota, at the ``call``-th sample (0-based).

    Crossings it makes, with the 80/100 thresholds and 5 points of hysteresis:
    call 100 raises 80 (then hovers at 77-81: no new alert), call 200 clears it, call 300
    raises 80 again, call 400 raises 100 (then 97-99: no new alert), call 500 clears both.
    """
    if call < 100:
        return 50
    if call < 200:
        return 81 if call % 2 == 0 else 77
    if call < 300:
        return 60
    if call < 400:
        return 90
    if call < 450:
        return 100
    if call < 500:
        return 97 if call % 2 == 0 else 99
    return 10


EXPECTED_ALERTS = [
    ("storage_bytes", 80, "raised"),
    ("storage_bytes", 80, "cleared"),
    ("storage_bytes", 80, "raised"),
    ("storage_bytes", 100, "raised"),
    ("storage_bytes", 80, "cleared"),
    ("storage_bytes", 100, "cleared"),
]


class ScriptedUsage:
    """Counts its calls, so a test can tell that a paused workflow samples nothing."""

    def __init__(
        self,
        percent: Callable[[int], int] = storage_percent,
        fail: Callable[[int], BaseException | None] = lambda call: None,
    ) -> None:
        self.calls = 0
        self.attempts = 0
        self._percent = percent
        self._fail = fail

    @activity.defn(name=COLLECT_TENANT_USAGE_ACTIVITY)
    async def collect(self, request: UsageRequest) -> UsageSample:
        self.attempts += 1
        error = self._fail(self.calls)
        if error is not None:
            raise error
        call = self.calls
        self.calls += 1
        used = QUOTAS.storage_bytes * self._percent(call) // 100
        return UsageSample(
            tenant_id=request.tenant_id,
            usage=ResourceAmounts(storage_bytes=used, files=1, users=1, db_rows=10),
            quotas=QUOTAS,
            sampled_at=datetime.now(UTC),
        )


def tenant_gone_after(calls: int) -> Callable[[int], BaseException | None]:
    def fail(call: int) -> BaseException | None:
        if call >= calls:
            return ApplicationError("tenant removed", type=TENANT_GONE, non_retryable=True)
        return None

    return fail
