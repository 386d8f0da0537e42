"""Schemathesis against the live API, on the real stack: every operation in
``/openapi.json`` gets generated requests (valid ones, invalid ones, and valid ones aimed at
resources that exist), and every answer must be no 5xx and conform to the document: its
status code, content type, body schema and headers.

The run is reproducible (hypothesis derandomised, no example database, no shrinking) and
bounded for CI. Nothing is excluded: the event stream is fuzzed too, because its known id
names a finished operation, whose stream sends the final event and closes; a destructive
call cannot hurt the run, because the caller is the admin of a throwaway tenant (who may not
remove the tenant) and removals run after everything else.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.api.conftest import LiveApi

Operation = APIOperation[Any, Any, Any, Any]
FuzzCase = Case[Any]

# tus appends are raw bytes under their own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    # Bad input gets a 4xx: an invalid request (a wrong type, a missing field or token, a
    # broken header) answered 2xx fails the run.
    negative_data_rejection,
]
# Examples per operation (shared by its valid, invalid and known-id strategies) and per
# platform-only operation in the second pass; operations with few possible requests
# (no parameters) stop sooner.
EXAMPLES = 14
PLATFORM_EXAMPLES = 10
MIN_REQUESTS = 500
REQUEST_TIMEOUT = 30.0
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=", re.IGNORECASE)
# Which resource a path parameter names, by the path's first segments.
_KNOWN: dict[tuple[str, str], str] = {
    ("/v1/tenants/", "id"): "tenant",
    ("/v1/users/", "id"): "user",
    ("/v1/files/", "id"): "file",
    ("/v1/files/", "share_id"): "share",
    ("/v1/groups/", "id"): "group",
    ("/v1/groups/", "user_id"): "user",
    ("/v1/uploads/", "id"): "upload",
    ("/v1/operations/", "id"): "operation",
    ("/s/", "token"): "link",
}


@dataclass
class Report:
    operations: set[str] = field(default_factory=set)
    requests: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    statuses_by_operation: dict[str, dict[int, int]] = field(default_factory=dict)
    # One example per (operation, failure title, status): the same bug found 20 times is
    # reported once.
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, case: FuzzCase, status: int, error: BaseException | None) -> None:
        label = case.operation.label
        with self.lock:
            self.requests += 1
            self.by_operation[label] = self.by_operation.get(label, 0) + 1
            per_operation = self.statuses_by_operation.setdefault(label, {})
            per_operation[status] = per_operation.get(status, 0) + 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if error is None:
                return
            failures = error.exceptions if isinstance(error, BaseExceptionGroup) else [error]
            for failure in failures:
                title = getattr(failure, "title", type(failure).__name__)
                message = getattr(failure, "message", str(failure))
                self.failures.setdefault(
                    (label, title, status),
                    f"{message}\n  {case.as_curl_command()}",
                )


def _known_parameters(operation: Operation, live: LiveApi) -> dict[str, str] | None:
    """Values of existing resources for all of the operation's path parameters, if there
    are such parameters and we have a resource for each."""
    names = [p.name for p in operation.path_parameters]
    if not names:
        return None
    values = {}
    for name in names:
        kind = next(
            (
                kind
                for (prefix, param), kind in _KNOWN.items()
                if param == name and operation.path.startswith(prefix)
            ),
            None,
        )
        if kind is None:
            return None
        values[name] = live.known[kind]
    return values


def _strategy(operation: Operation, known: dict[str, str] | None) -> Any:
    options = [operation.as_strategy(GenerationMode.POSITIVE)]
    options.append(operation.as_strategy(GenerationMode.NEGATIVE))
    if known is not None:
        # Twice: requests that reach a real resource are where handlers do the most.
        aimed = operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known)
        options += [aimed, aimed]
    return st.one_of(options)


def _fuzz_operation(
    operation: Operation,
    strategy: Any,
    examples: int,
    call: Callable[[FuzzCase], None],
) -> None:
    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(case=strategy)
    def run(case: FuzzCase) -> None:
        call(case)

    run()


def _caller(live: LiveApi, token: str, report: Report) -> Callable[[FuzzCase], None]:
    def call(case: FuzzCase) -> None:
        prefer = case.headers.get("Prefer") if case.headers else None
        if case.headers and isinstance(prefer, str) and _PREFER_WAIT.search(f" {prefer} "):
            # A generated `wait=N` could hold a request for up to a minute; the three paths
            # of Prefer have tests of their own.
            case.headers["Prefer"] = "wait=1"
        response = case.call(
            base_url=live.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT,
        )
        error: BaseException | None = None
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:
            error = exc
        report.record(case, response.status_code, error)

    return call


def _run(live: LiveApi) -> Report:
    """The whole run, synchronous (schemathesis calls with requests): it runs in a thread
    while the API and the workers serve on the test's event loop."""
    # The document as served. Loaded from a dict: loading from the URL would leave out the
    # operation that serves it.
    served = requests.get(f"{live.base_url}/openapi.json", timeout=REQUEST_TIMEOUT)
    served.raise_for_status()
    schema = schemathesis.openapi.from_dict(served.json())
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is broken
        operations.append(result.ok())
    # Removals last, so the resources they may remove serve every other operation first.
    operations.sort(key=lambda op: op.method.lower() == "delete")
    report = Report(operations={operation.label for operation in operations})
    as_admin = _caller(live, live.admin_token, report)
    for operation in operations:
        known = _known_parameters(operation, live)
        _fuzz_operation(operation, _strategy(operation, known), EXAMPLES, as_admin)
    # Platform-only operations refuse a tenant admin before reading the request; a
    # platform admin gets past that. Random ids only: the throwaway tenant stays.
    as_platform = _caller(live, live.platform_token, report)
    for operation in operations:
        if "platform admin" in (operation.definition.raw.get("summary") or ""):
            _fuzz_operation(operation, _strategy(operation, None), PLATFORM_EXAMPLES, as_platform)
    return report


# schemathesis's own strategies draw from `random` (deterministic here: hypothesis seeds it).
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_the_live_api_conforms_to_its_document(live_api: LiveApi) -> None:
    started = time.monotonic()
    report = await asyncio.to_thread(_run, live_api)
    elapsed = time.monotonic() - started
    summary = (
        f"{report.requests} requests over {len(report.by_operation)} operations in "
        f"{elapsed:.0f} s; statuses {dict(sorted(report.statuses.items()))}"
    )
    print(summary)  # with -s: what the run reached, operation by operation
    for label, statuses in sorted(report.statuses_by_operation.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")
    problems = [
        f"{label} -> {status}: {title}\n  {detail}"
        for (label, title, status), detail in sorted(report.failures.items())
    ]
    assert not problems, summary + "\n\n" + "\n\n".join(problems)
    assert report.requests >= MIN_REQUESTS, summary
    untested = report.operations - set(report.by_operation)
    assert not untested, f"operations that got no request: {sorted(untested)}"
    assert not [code for code in report.statuses if code >= 500], summary
