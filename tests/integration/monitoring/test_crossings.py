"""The crossing rule on its own: raise at the threshold, clear only below the hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adx_core.contracts.monitoring import (
    MAX_INTERVAL_SECONDS,
    MIN_INTERVAL_SECONDS,
    AlertState,
    ResourceAmounts,
    UsageSample,
)
from adx_workers.monitoring.workflows import crossings, valid_interval


def sample(files: int, quota: int = 100) -> UsageSample:
    return UsageSample(
        tenant_id="t",
        usage=ResourceAmounts(files=files),
        quotas=ResourceAmounts(files=quota),
        sampled_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def run(values: list[int], quota: int = 100) -> list[tuple[int, str]]:
    alerts = [AlertState("files", 80), AlertState("files", 100)]
    seen: list[tuple[int, str]] = []
    for value in values:
        alerts, changes = crossings(alerts, sample(value, quota), hysteresis_percent=5)
        seen += [(c.alert.threshold_percent, c.state) for c in changes]
    return seen


def test_exactly_at_the_threshold_raises_once() -> None:
    assert run([79, 80, 80, 81]) == [(80, "raised")]


def test_hovering_inside_the_hysteresis_does_not_realert() -> None:
    assert run([85, 76, 84, 75, 83]) == [(80, "raised")]


def test_falling_below_the_hysteresis_clears_and_the_next_rise_alerts_again() -> None:
    assert run([85, 74, 85]) == [(80, "raised"), (80, "cleared"), (80, "raised")]


def test_a_jump_past_two_thresholds_raises_both() -> None:
    assert run([10, 120, 10]) == [
        (80, "raised"),
        (100, "raised"),
        (80, "cleared"),
        (100, "cleared"),
    ]


def test_crossings_are_numbered() -> None:
    alerts = [AlertState("files", 80)]
    for value in (90, 10, 90):
        alerts, _ = crossings(alerts, sample(value), hysteresis_percent=5)
    assert alerts == [AlertState("files", 80, active=True, crossings=2)]


def test_a_zero_quota_is_unlimited() -> None:
    assert run([500, 10**9], quota=0) == []


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (MIN_INTERVAL_SECONDS, True),
        (MAX_INTERVAL_SECONDS, True),
        (MIN_INTERVAL_SECONDS - 1, False),
        (MAX_INTERVAL_SECONDS + 1, False),
        (0, False),
        (-1, False),
        (True, False),
        (60.0, False),
        ("60", False),
        (None, False),
    ],
)
def test_interval_bounds(value: object, valid: bool) -> None:
    assert valid_interval(value) is valid
