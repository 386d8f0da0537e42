"""The client's pure parts: errors from answers, retry timing, operation parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict

from adx_core.client import ApiError, ApiProblem, OperationFailed
from adx_core.client.api import (
    MAX_RECONNECT,
    MAX_RETRY_AFTER,
    error_from,
    reconnect_delay,
    retry_after_seconds,
)
from adx_core.client.models import Answer, Event, Operation, is_operation_location

OPERATION = {
    "id": "tenant-provisioning-1",
    "type": "tenant_provisioning_workflow",
    "status": "failed",
    "progress": {"step": "setup_storage", "percent": 40, "counters": {"files": 2}},
    "result": None,
    "error": {"title": "A step failed", "detail": "disk full", "step": "setup_storage"},
    "created_at": "2025-01-31T10:00:00+00:00",
    "updated_at": "2025-01-31T10:00:05Z",
    "links": {"self": "/v1/operations/tenant-provisioning-1"},
    "extra": "kept in raw",
}


def test_a_problem_answer_is_an_api_problem() -> None:
    body = {
        "type": "https://adx.dev/problems/not-found",
        "title": "Not found",
        "status": 404,
        "detail": "no such operation",
    }
    headers = {"Content-Type": "application/problem+json", "X-Request-ID": "r-1"}
    error = error_from(404, headers, json.dumps(body).encode())
    assert isinstance(error, ApiProblem)
    assert (error.status, error.type, error.title, error.detail) == (
        404,
        body["type"],
        "Not found",
        "no such operation",
    )
    assert error.kind == "not-found"
    assert error.problem == body
    assert error.request_id == "r-1"
    assert str(error) == "HTTP 404: Not found: no such operation"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><body>502 Bad Gateway</body></html>"),
        ("application/problem+json", b"not json"),
        ("", b""),
    ],
)
def test_anything_else_is_an_api_error_that_says_what_came(content_type: str, body: bytes) -> None:
    error = error_from(502, {"Content-Type": content_type}, body)
    assert type(error) is ApiError
    assert error.status == 502
    assert "unexpected" in error.message
    assert error.body == body.decode()


def test_retry_after_in_seconds_an_http_date_or_a_backoff() -> None:
    assert retry_after_seconds(CIMultiDict({"Retry-After": "3"}), 1) == 3
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8 < retry_after_seconds(CIMultiDict({"Retry-After": later}), 1) <= 10
    assert retry_after_seconds(CIMultiDict({"Retry-After": "86400"}), 1) == MAX_RETRY_AFTER
    assert retry_after_seconds(CIMultiDict({"Retry-After": "soon"}), 3) == 2.0
    assert retry_after_seconds(CIMultiDict(), 1) == 0.5
    assert retry_after_seconds(CIMultiDict(), 1, default=None) == 0


def test_reconnect_delay_honours_retry_then_backs_off() -> None:
    for _ in range(50):
        assert 0.08 <= reconnect_delay(1, 100, None) <= 0.1
        assert 0.16 <= reconnect_delay(2, 100, None) <= 0.2
        assert 0.4 <= reconnect_delay(1, None, None) <= 0.5
        assert reconnect_delay(30, 1000, None) <= MAX_RECONNECT
        assert reconnect_delay(1, 100, 5.0) == 5.0


def test_an_operation_from_its_json() -> None:
    operation = Operation.from_json(OPERATION)
    assert operation.progress.step == "setup_storage"
    assert operation.progress.counters == {"files": 2}
    assert operation.created_at == datetime(2025, 1, 31, 10, tzinfo=UTC)
    assert operation.updated_at == datetime(2025, 1, 31, 10, 0, 5, tzinfo=UTC)
    assert operation.done
    assert not operation.succeeded
    assert operation.raw["extra"] == "kept in raw"
    assert str(OperationFailed(operation)) == (
        "operation tenant-provisioning-1 failed at step setup_storage: disk full"
    )


@pytest.mark.parametrize("body", [None, [], {"id": "x"}, {**OPERATION, "created_at": "then"}])
def test_what_is_not_an_operation_is_an_api_error(body: object) -> None:
    with pytest.raises(ApiError, match="operation"):
        Operation.from_json(body)


def test_answers_read_the_same_for_both_kinds_of_route() -> None:
    direct = Answer(201, {"name": "editors"}, "/v1/groups/1", None)
    assert direct.done
    assert direct.resource == {"name": "editors"}
    succeeded = Operation.from_json({**OPERATION, "status": "succeeded", "result": {"a": 1}})
    workflow = Answer(200, succeeded.raw, "/v1/operations/x", succeeded)
    assert workflow.done
    assert workflow.resource == {"a": 1}


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v1/operations/tenant-provisioning-1", True),
        ("http://127.0.0.1:8080/v1/operations/x", True),
        ("/v1/groups/1", False),
        (None, False),
        ("", False),
    ],
)
def test_operation_locations(location: str | None, expected: bool) -> None:
    assert is_operation_location(location) is expected


def test_only_final_events_carry_an_operation() -> None:
    assert Event("9", "completed", OPERATION).operation().id == OPERATION["id"]
    with pytest.raises(ValueError, match="step"):
        Event("3", "step", {"step": "x"}).operation()
