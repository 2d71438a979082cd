"""Request bodies are read whole, before the app sees them, or refused.

Werkzeug enforces ``MAX_CONTENT_LENGTH`` from the Content-Length header; a chunked body has
none, and Werkzeug's stream then merely stops at the limit, so the rest of the body was lost
without a word (an event stored truncated, or a JSON body answered 400 as "not JSON"). And a
server's error in the chunked framing (gunicorn's ``InvalidChunkSize``) surfaced in whatever
view read the body, as a 500. Here, in front of the app, every body with a Content-Length or a
chunked framing is read to its end, so that:

- a body over the limit is 413, whatever its framing;
- a body whose framing is broken, or that ends before its Content-Length, is 400;
- the app reads the body from memory, with its length as Content-Length (Transfer-Encoding
  removed: the framing is undone).

The answers themselves come from ``bridge/http/errors.py``, like every other error.
"""

from __future__ import annotations

from collections.abc import Iterable
from io import BytesIO
from typing import TYPE_CHECKING, Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.errors import BadPayload

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BODY_ERROR = "bridge.body_error"  # environ key: (status, message) of a body refused here
READ_STEP = 64 * 1024


class WholeBody:
    """WSGI middleware: reads the body into memory, or notes in the environ why it cannot."""

    def __init__(self, app: WSGIApplication, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        read_whole_body(environ, self.limit)
        return self.app(environ, start_response)


def read_whole_body(environ: dict[str, Any], limit: int) -> None:
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    length = _content_length(environ)
    if not chunked and (not length or length > limit):
        return  # no body, or one Werkzeug refuses from its Content-Length without reading it
    wanted = limit + 1 if chunked else length
    assert wanted is not None
    stream = environ["wsgi.input"]
    body = bytearray()
    try:
        # never more than one byte past the limit is asked for: a server that already holds the
        # whole request (bridge/server.py) holds at least that much of an oversized one
        while len(body) < wanted:
            piece = stream.read(min(READ_STEP, wanted - len(body)))
            if not piece:
                break
            body += piece
    except Exception as exc:  # the server's framing error, or the connection's
        framing = "chunked framing" if chunked else "body"
        _replace(environ, b"", (400, f"the request's {framing} could not be read ({type(exc).__name__})"))
        return
    if chunked and len(body) > limit:
        _replace(environ, b"", (413, ""))
    elif not chunked and len(body) < wanted:
        _replace(environ, b"", (400, f"the body ended after {len(body)} of its {wanted} bytes (Content-Length)"))
    else:
        _replace(environ, bytes(body), None)


def _content_length(environ: dict[str, Any]) -> int | None:
    raw = str(environ.get("CONTENT_LENGTH") or "").strip()
    return int(raw) if raw.isdigit() else None


def _replace(environ: dict[str, Any], body: bytes, error: tuple[int, str] | None) -> None:
    environ["wsgi.input"] = BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    if error is not None:
        environ[BODY_ERROR] = error


def refuse_unread_body() -> None:
    """before_request: the answer to a body :class:`WholeBody` could not read."""
    error = request.environ.get(BODY_ERROR)
    if error is None:
        return
    status, message = error
    if status == 413:
        raise RequestEntityTooLarge()
    raise BadPayload(message)
