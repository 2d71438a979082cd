"""LOG_FORMAT=text: a request line stays one line, whatever control characters its path carries."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import AppFactory

HOSTILE_PATH = "/hooks/x%0a2026-01-01 INFO bridge.http forged%1b[31mred%7f"


@contextmanager
def bridge_log() -> Iterator[io.StringIO]:
    """What the bridge's own log handler writes, while the block runs."""
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_bridge", False)]
    assert isinstance(handler, logging.StreamHandler)
    out = io.StringIO()
    previous = handler.setStream(out)
    try:
        yield out
    finally:
        handler.setStream(previous)


def test_text_lines_escape_control_characters_from_the_path(make_app: AppFactory) -> None:
    app = make_app(LOG_FORMAT="text")
    with bridge_log() as out:
        response = app.test_client().post(HOSTILE_PATH, json={})
    assert response.status_code == 404
    lines = out.getvalue().splitlines()
    [line] = [line for line in lines if "forged" in line]
    assert len(lines) == 1, lines
    assert "/hooks/x\\x0a2026-01-01 INFO bridge.http forged\\x1b[31mred\\x7f 404" in line
    assert not any(ch < " " or ch == "\x7f" for ch in out.getvalue().rstrip("\n"))


def test_text_tracebacks_stay_on_their_record_line(make_app: AppFactory) -> None:
    make_app(LOG_FORMAT="text")
    with bridge_log() as out:
        try:
            raise ValueError("first\nsecond")
        except ValueError:
            logging.getLogger("bridge.test").exception("failed")
    [line] = out.getvalue().splitlines()
    assert "failed\\x0aTraceback" in line and "ValueError: first\\x0asecond" in line
