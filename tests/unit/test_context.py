"""The request context: correlation ids from headers, and the Temporal header roundtrip."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest

from adx_core import context
from adx_core.context import AuthContext, correlation_id_from

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
GENERATED = re.compile(r"^[0-9a-f]{32}$")


def test_request_id_wins_when_well_formed() -> None:
    """A well-formed X-Request-ID is used as is, even when a traceparent is present."""
    assert correlation_id_from("req-123_abc.def:9", TRACEPARENT) == "req-123_abc.def:9"
    assert correlation_id_from("a" * 128, None) == "a" * 128


@pytest.mark.parametrize(
    "request_id",
    [
        "",
        "a" * 129,
        "has space",
        "new\nline",
        "inject\r\nX-Evil: 1",
        'quote"d',
        "<script>",
        "ünïcode",
        "semi;colon",
    ],
)
def test_malformed_request_id_falls_back_to_the_trace_id(request_id: str) -> None:
    """An X-Request-ID unsafe to log or echo is ignored; the traceparent's trace id is used."""
    assert correlation_id_from(request_id, TRACEPARENT) == TRACE_ID


def test_traceparent_is_case_and_space_tolerant() -> None:
    """Upper-case hex and surrounding whitespace still yield the (lower-case) trace id."""
    assert correlation_id_from(None, f"  {TRACEPARENT.upper()}  ") == TRACE_ID


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id is invalid by the spec
        f"00-{TRACE_ID}-00f067aa0ba902b7",  # missing flags
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",  # short trace id
        f"00-{TRACE_ID}x-00f067aa0ba902b7-01",
        "garbage",
        "",
    ],
)
def test_invalid_traceparent_gives_a_fresh_id(traceparent: str) -> None:
    """Without a usable header a new random id is made; the bad value is not reused."""
    result = correlation_id_from(None, traceparent)
    assert GENERATED.match(result)
    assert result != TRACE_ID
    assert result != "0" * 32


def test_fresh_ids_are_unique() -> None:
    """Generated correlation ids do not repeat."""
    assert len({correlation_id_from(None, None) for _ in range(100)}) == 100


def test_header_roundtrip() -> None:
    """to_header and from_header carry every field of the context unchanged."""
    ctx = AuthContext("cid-1", user_id="u-1", tenant_id="t-1", roles=("member", "viewer"))
    assert AuthContext.from_header(ctx.to_header()) == ctx
    system = AuthContext("cid-2")
    assert AuthContext.from_header(system.to_header()) == system


@pytest.mark.parametrize(
    "data",
    [None, "cid", 42, [], ["cid"], {}, {"correlation_id": ""}, {"correlation_id": 7}],
)
def test_from_header_rejects_garbage(data: object) -> None:
    """A header without a correlation id string gives no context, and never raises."""
    assert AuthContext.from_header(data) is None


def test_from_header_drops_fields_of_the_wrong_type() -> None:
    """Wrongly typed user, tenant or roles are dropped; string roles are kept."""
    ctx = AuthContext.from_header(
        {"correlation_id": "c", "user_id": 5, "tenant_id": ["t"], "roles": ["member", 3, None]}
    )
    assert ctx == AuthContext("c", None, None, ("member",))
    assert AuthContext.from_header({"correlation_id": "c", "roles": "admin"}) == AuthContext("c")


def test_with_tenant_returns_a_copy() -> None:
    """with_tenant does not change the original context."""
    ctx = AuthContext("c", tenant_id="a")
    assert ctx.with_tenant("b").tenant_id == "b"
    assert ctx.tenant_id == "a"


def test_use_restores_the_previous_context() -> None:
    """use() nests and restores, even when the block raises."""
    outer, inner = AuthContext("outer"), AuthContext("inner")
    assert context.current() is None
    with context.use(outer):
        assert context.current() is outer
        with contextlib.suppress(RuntimeError), context.use(inner):
            assert context.current() is inner
            raise RuntimeError
        assert context.current() is outer
    assert context.current() is None


async def test_context_follows_tasks_but_does_not_leak_back() -> None:
    """A task inherits the caller's context; what the task binds stays in the task."""
    seen: list[str | None] = []

    async def child() -> None:
        ctx = context.current()
        seen.append(ctx.correlation_id if ctx else None)
        context.bind(AuthContext("child-only"))

    with context.use(AuthContext("parent")):
        await asyncio.create_task(child())
        current = context.current()
        assert current is not None
        assert current.correlation_id == "parent"
    assert seen == ["parent"]
