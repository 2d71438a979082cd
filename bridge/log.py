"""Logging: request and event ids on every line, and secrets scrubbed before anything is written."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s evt=%(event_id)s] %(message)s"
# fields a log call may add with extra= that the JSON lines carry as their own keys
JSON_EXTRAS = (
    "source",
    "status",
    "method",
    "path",
    "duration_ms",
    "attempt",
    "step",
    "outcome",
    "http_status",
    "ticket_id",
)
REDACTED = "[REDACTED]"
# C0 controls (newline and tab included), DEL and C1 controls: a sender-chosen path or field must
# not start a forged line or reach an operator's terminal as an escape sequence
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ContextFilter(logging.Filter):
    """Fills ``request_id``/``event_id`` (from ``extra=`` or the current Flask request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current_request_id()
        if not hasattr(record, "event_id"):
            record.event_id = "-"
        return True


class SecretsFilter(logging.Filter):
    """Replaces every configured secret that appears in a formatted log message or its traceback."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:  # formatters reuse exc_text as it is
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def scrub_data(value: Any, secrets: list[str]) -> Any:
    """A copy of ``value`` with ``scrub`` applied to every string inside nested dicts and lists,
    keys included (a sender may echo the secret as a key as well as a value).

    Iterative, not recursive: a sender's JSON may nest as deeply as the JSON parser accepts,
    which at this depth of a request is more than Python's recursion limit leaves room for.
    """
    if not isinstance(value, (dict, list)):
        return scrub(value, secrets) if isinstance(value, str) else value
    copy: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    pending: list[tuple[dict[Any, Any] | list[Any], dict[Any, Any] | list[Any]]] = [(value, copy)]
    while pending:
        source, target = pending.pop()
        for key, item in source.items() if isinstance(source, dict) else enumerate(source):
            if isinstance(item, (dict, list)):
                scrubbed: Any = {} if isinstance(item, dict) else []
                pending.append((item, scrubbed))  # filled in later, in place
            else:
                scrubbed = scrub(item, secrets) if isinstance(item, str) else item
            if isinstance(target, dict):
                target[scrub(key, secrets) if isinstance(key, str) else key] = scrubbed
            else:
                target.append(scrubbed)
    return copy


def _current_request_id() -> str:
    try:
        from flask import g, has_request_context

        return str(g.get("request_id", "-")) if has_request_context() else "-"
    except ImportError:  # pragma: no cover
        return "-"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request and event ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "event_id": getattr(record, "event_id", "-"),
        }
        line.update({k: getattr(record, k) for k in JSON_EXTRAS if hasattr(record, k)})
        if record.exc_info:
            line["error"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """LOG_FORMAT=text: one line per record, every control character written as ``\\xNN``.

    A traceback therefore stays on its record's line too (its newlines read ``\\x0a``).
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def configure_logging(secrets: Iterable[str], level: int = logging.INFO, fmt: str = "json") -> None:
    """Install one stderr handler on the root logger (idempotent: format and filters are refreshed)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_bridge", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._bridge = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    json_formatter = JsonFormatter()
    json_formatter.converter = time.gmtime
    handler.setFormatter(json_formatter if fmt == "json" else TextFormatter())
    handler.filters = [ContextFilter(), SecretsFilter(secrets)]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
