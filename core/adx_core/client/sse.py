"""An incremental ``text/event-stream`` parser, after the WHATWG HTML "event stream
interpretation" rules.

Feed it the body's bytes as they arrive, in chunks of any size; it hands back the events
that each chunk completed. Lines may end in CRLF, LF or a lone CR, also when a CRLF is split
across two chunks; a UTF-8 character may be split too. No PyPI package fitted: the
maintained parsers are tied to httpx or requests, and the aiohttp ones split on LF only.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_BOM = "\ufeff"
_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event. ``last_event_id`` is the stream's last event id when the event
    was dispatched (which the event need not have set itself), as in the browser's API."""

    type: str
    data: str
    last_event_id: str


class SseParser:
    def __init__(self, last_event_id: str = "") -> None:
        """``last_event_id``: the id a previous connection ended on; a stream resumed with
        it keeps reporting it until the server sends another."""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        # A chunk that ended in CR: if the next one starts with LF, that LF ends no new line.
        self._after_cr = False
        self._data: list[str] = []
        self._event_type = ""
        self._id_buffer = last_event_id
        self.last_event_id = last_event_id
        #: The reconnection time the server asked for with ``retry:``, in milliseconds.
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk``."""
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> None:
        """The stream ended: an event without its closing blank line is dropped, as the
        spec says, so a half-received event is never taken for a whole one."""
        self._decoder.decode(b"", final=True)
        self._buffer = ""
        self._data = []
        self._event_type = ""

    def _feed_text(self, text: str) -> list[SseEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        if self._after_cr:
            self._after_cr = False
            text = text.removeprefix("\n")
        buffer = self._buffer + text
        events: list[SseEvent] = []
        start = 0
        for end in _EOL.finditer(buffer):
            event = self._line(buffer[start : end.start()])
            if event is not None:
                events.append(event)
            start = end.end()
        # A CR at the very end may be the first half of a CRLF split across chunks.
        self._after_cr = start == len(buffer) and buffer.endswith("\r")
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, such as the server's keep-alive ping
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None  # other field names are ignored

    def _dispatch(self) -> SseEvent | None:
        self.last_event_id = self._id_buffer
        data, self._data = self._data, []
        event_type, self._event_type = self._event_type, ""
        if not data:
            return None
        return SseEvent(event_type or "message", "\n".join(data), self.last_event_id)
