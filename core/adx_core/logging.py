"""JSON logs through structlog, with the correlation context and a redaction pass.

Every line, ours or a library's through the standard logging module, goes through the
same processors, so the redaction cannot be bypassed by logging through another path.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from adx_core import context

REDACTED = "[REDACTED]"

# Keys whose values are secret whatever they hold.
_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|authorization|api[_-]?key|cookie|credential|private[_-]?key|"
    r"codec[_-]?key|dsn|database_url)",
    re.IGNORECASE,
)
# Values that are secret or personal wherever they appear, even inside a message.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s/]+@")


def redact_text(text: str) -> str:
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(f"Bearer {REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\g<scheme>:{REDACTED}@", text)
    return _EMAIL.sub(_mask_email, text)


def _mask_email(match: re.Match[str]) -> str:
    local, _, domain = match.group(0).partition("@")
    return f"{local[:1]}***@{domain}"


def redact_value(key: str | None, value: Any) -> Any:
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(None, v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (bytes, exceptions, objects) the JSON renderer would write as repr():
    # redact that text rather than let it through unread.
    return redact_text(repr(value))


# Our own ids, and structlog's ProcessorFormatter bookkeeping (removed before rendering).
_NOT_REDACTED = frozenset(
    {"correlation_id", "tenant_id", "user_id", "workflow_id", "run_id"}
    | {"_record", "_from_structlog"}
)


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask secrets, tokens and e-mail addresses in every field and in the message."""
    for key in list(event_dict):
        if key in _NOT_REDACTED:
            continue
        event_dict[key] = redact_value(key if key != "event" else None, event_dict[key])
    return event_dict


def add_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add the correlation id, caller and the Temporal execution the line belongs to."""
    ctx = context.current()
    if ctx is not None:
        event_dict.setdefault("correlation_id", ctx.correlation_id)
        if ctx.tenant_id:
            event_dict.setdefault("tenant_id", ctx.tenant_id)
        if ctx.user_id:
            event_dict.setdefault("user_id", ctx.user_id)
    _add_temporal_context(event_dict)
    return event_dict


def _add_temporal_context(event_dict: MutableMapping[str, Any]) -> None:
    # Imported here: logging is configured before anything touches Temporal.
    from temporalio import activity

    if activity.in_activity():
        info = activity.info()
        event_dict.setdefault("workflow_id", info.workflow_id)
        event_dict.setdefault("activity", info.activity_type)
        event_dict.setdefault("attempt", info.attempt)


def shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_context,
        structlog.processors.format_exc_info,
        redact,
    ]


def configure_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Send every log line, ours and the libraries', as one redacted JSON object per line."""
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what our middleware logs, with the raw query string.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
