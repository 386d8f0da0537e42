"""The client's event-stream parser against the WHATWG "event stream interpretation" rules,
fed whole, byte by byte and split at every position."""

from __future__ import annotations

import pytest

from adx_core.client.sse import SseEvent, SseParser


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    parser.close()
    return events


# Every rule at once, with the three line endings mixed.
STREAM = (
    "\ufeff: a comment, as the keep-alive ping\r\n"
    "retry: 250\n"
    "id: 1\r"
    "event: step\r\n"
    'data: {"step": "validate",\n'
    'data:  "percent": 5}\r'
    "\r\n"
    "data\n"
    "\n"
    "event: no data, so no event\n"
    "\n"
    "id: 7\n"
    "\n"
    "data:é ü 中\r"
    "unknown: field\r"
    "\r"
    "id: 8\r\n"
    "event: completed\r\n"
    "data: done\r\n"
    "\r\n"
    "data: cut off before its blank line\n"
).encode()

EXPECTED = [
    SseEvent("step", '{"step": "validate",\n "percent": 5}', "1"),
    SseEvent("message", "", "1"),
    SseEvent("message", "é ü 中", "7"),
    SseEvent("completed", "done", "8"),
]


def test_a_whole_stream() -> None:
    parser = SseParser()
    assert parser.feed(STREAM) == EXPECTED
    assert parser.retry_ms == 250
    assert parser.last_event_id == "8"


def test_byte_by_byte() -> None:
    """Splits a CRLF and the UTF-8 characters between chunks, too."""
    assert parse(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED


def test_split_at_every_position() -> None:
    for cut in range(len(STREAM) + 1):
        assert parse(STREAM[:cut], STREAM[cut:]) == EXPECTED, cut


def test_a_crlf_split_across_chunks_ends_one_line_only() -> None:
    """Were the LF taken for a blank line, "a" would go out as an event of its own."""
    assert parse(b"data: a\r", b"\ndata: b\r\n\r\n") == [SseEvent("message", "a\nb", "")]


def test_a_lone_cr_then_an_lf_in_a_later_chunk_is_a_blank_line() -> None:
    assert parse(b"data: a\r", b"x", b"\n\n") == [SseEvent("message", "a", "")]
    assert parse(b"data: a\r", b"", b"\n", b"\n") == [SseEvent("message", "a", "")]


def test_an_event_goes_out_at_its_blank_line_not_later() -> None:
    parser = SseParser()
    assert parser.feed(b"data: 1\n") == []
    assert parser.feed(b"\n") == [SseEvent("message", "1", "")]
    assert parser.feed(b"data: 2\r") == []
    assert parser.feed(b"\r") == [SseEvent("message", "2", "")]


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:x", "x"),
        (b"data: x", "x"),
        (b"data:  x", " x"),  # only the first space goes
        (b"data: a: b", "a: b"),  # the first colon splits
        (b"data:", ""),
        (b"data", ""),
    ],
)
def test_field_values(line: bytes, data: str) -> None:
    assert parse(line + b"\n\n") == [SseEvent("message", data, "")]


@pytest.mark.parametrize("value", [b"", b"abc", b"1.5", b"-1", b"  12", "\u0661".encode()])
def test_a_retry_that_is_not_ascii_digits_is_ignored(value: bytes) -> None:
    parser = SseParser()
    parser.feed(b"retry: 100\n\nretry:" + value + b"\n\n")
    assert parser.retry_ms == 100


def test_ids() -> None:
    parser = SseParser()
    events = parser.feed(b"id: 3\ndata: a\n\ndata: b\n\nid: 4\x005\ndata: c\n\nid\ndata: d\n\n")
    # An event without an id reports the last one; an id with NUL is ignored; a bare id resets.
    assert [e.last_event_id for e in events] == ["3", "3", "3", ""]
    assert parser.last_event_id == ""


def test_an_id_without_data_moves_the_resume_point_without_an_event() -> None:
    parser = SseParser()
    assert parser.feed(b"id: 41\n\n") == []
    assert parser.last_event_id == "41"


def test_a_resumed_stream_starts_from_the_previous_id() -> None:
    parser = SseParser(last_event_id="12")
    assert parser.feed(b"data: x\n\n") == [SseEvent("message", "x", "12")]


def test_only_a_leading_bom_is_dropped() -> None:
    assert parse("\ufeffdata: a\n\n\ufeffdata: b\n\n".encode()) == [SseEvent("message", "a", "")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert parse(b"data: \xff\n\n") == [SseEvent("message", "\ufffd", "")]


def test_the_event_type_does_not_carry_over() -> None:
    assert parse(b"event: step\ndata: 1\n\ndata: 2\n\n") == [
        SseEvent("step", "1", ""),
        SseEvent("message", "2", ""),
    ]


def test_close_drops_the_unfinished_event() -> None:
    parser = SseParser()
    assert parser.feed(b"event: step\ndata: half") == []
    parser.close()
    assert parser.feed(b"\n\n") == []
