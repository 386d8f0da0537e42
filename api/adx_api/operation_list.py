"""``GET /v1/operations``: the filters a caller may give, turned into a Temporal visibility
query, and the opaque cursor that pages through it.

Pure functions, kept apart from the handler that runs the query: the tenant scope is
always the first clause and is built here from the token's claim, never from input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from multidict import MultiMapping

from adx_api.problems import ProblemError
from adx_core.contracts import search

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# A workflow type name as our contracts spell them; anything else cannot match and is
# refused with a clear error rather than passed into the query.
_WORKFLOW_TYPE = re.compile(r"^[a-z][a-z0-9_]{2,79}$")
_KNOWN_PARAMETERS = frozenset({"type", "status", "since", "until", "limit", "cursor"})

# Our statuses in visibility terms. ``pending`` and ``running`` are both Running
# executions; the Step search attribute (``pending`` until the first step starts) tells
# them apart. Runs that continued as new are left out: their successor is the operation.
_STATUS_CLAUSES = {
    "pending": f"ExecutionStatus = 'Running' AND {search.STEP.name} = 'pending'",
    "running": f"ExecutionStatus = 'Running' AND {search.STEP.name} != 'pending'",
    "succeeded": "ExecutionStatus = 'Completed'",
    "failed": "ExecutionStatus IN ('Failed', 'Terminated', 'TimedOut')",
    "cancelled": "ExecutionStatus = 'Canceled'",
}


@dataclass(frozen=True)
class ListFilter:
    workflow_type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def parse_filter(query: MultiMapping[str]) -> ListFilter:
    """The list filters from a query string; every bad value is a 400 naming the parameter."""
    unknown = sorted(set(query) - _KNOWN_PARAMETERS)
    if unknown:
        _bad(
            f"unknown query parameter {unknown[0]!r}; use type, status, since, until, limit, cursor"
        )
    for name in query:
        if len(query.getall(name)) > 1:
            _bad(f"give {name!r} at most once")
    workflow_type = query.get("type")
    if workflow_type is not None and not _WORKFLOW_TYPE.match(workflow_type):
        _bad("type must be a workflow type name, such as tenant_provisioning_workflow")
    status = query.get("status")
    if status is not None and status not in _STATUS_CLAUSES:
        _bad(f"status must be one of {', '.join(_STATUS_CLAUSES)}")
    since, until = _time(query, "since"), _time(query, "until")
    if since and until and since > until:
        _bad("since must not be after until")
    return ListFilter(
        workflow_type=workflow_type,
        status=status,
        since=since,
        until=until,
        limit=_limit(query.get("limit")),
        cursor=query.get("cursor"),
    )


def visibility_query(tenant_id: str, wanted: ListFilter) -> str:
    """The visibility query for one tenant's operations. Every value is validated above
    (or is the token's tenant uuid), so quoting cannot be escaped."""
    clauses = [
        f"{search.TENANT_ID.name} = '{tenant_id}'",
        "ExecutionStatus != 'ContinuedAsNew'",
    ]
    if wanted.workflow_type:
        clauses.append(f"WorkflowType = '{wanted.workflow_type}'")
    if wanted.status:
        clauses.append(_STATUS_CLAUSES[wanted.status])
    if wanted.since:
        clauses.append(f"StartTime >= '{_rfc3339(wanted.since)}'")
    if wanted.until:
        clauses.append(f"StartTime <= '{_rfc3339(wanted.until)}'")
    return " AND ".join(clauses)


def encode_cursor(query: str, page_token: bytes | None) -> str | None:
    """An opaque cursor: Temporal's page token plus a digest of the query it belongs to,
    so a cursor replayed with other filters (or another tenant's token) is refused."""
    if not page_token:
        return None
    body = {"q": _digest(query), "t": base64.urlsafe_b64encode(page_token).decode()}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode_cursor(query: str, cursor: str | None) -> bytes | None:
    if cursor is None:
        return None
    try:
        if len(cursor) > 4096:
            raise ValueError("too long")
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        token = base64.urlsafe_b64decode(body["t"])
        digest = body["q"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        _bad("cursor is not one this API returned")
    if digest != _digest(query):
        _bad("cursor belongs to another query; repeat the filters it was returned with")
    return token


def _digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:32]


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        _bad(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _time(query: MultiMapping[str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        _bad(f"{name} must be an RFC 3339 time, such as 2026-01-31T12:00:00Z")
    if parsed.tzinfo is None:
        _bad(f"{name} needs a time zone, such as 2026-01-31T12:00:00Z")
    # Visibility queries take four-digit years after the epoch; year 1 with an offset
    # does not even convert to UTC.
    if not 1970 <= parsed.year <= 9998:
        _bad(f"{name} must be between 1970 and 9998")
    return parsed.astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bad(detail: str) -> NoReturn:
    raise ProblemError(400, "bad-query", detail)
