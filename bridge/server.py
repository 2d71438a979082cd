"""gunicorn's threaded worker, taking a thread only for a request that has arrived whole.

gthread hands a connection to a pool thread as soon as it is readable, and the thread reads the
request with blocking calls: eight clients sending a byte a second occupied all 2 x 4 threads, and
nothing else was answered. :class:`BufferingThreadWorker` reads requests in the worker's main loop
instead, which already polls every socket with a selector for keep-alive: without blocking, until
the head and the whole body are in (a body over 1 MiB goes on to a temporary file). Only then does
a thread take the request, and it parses those bytes, never the socket, so a slow client costs a
socket and a buffer, never a thread. A request that has not arrived within
BRIDGE_REQUEST_READ_TIMEOUT_SECONDS of its first byte (or of the connection, for the first one)
is answered 408 and its connection closed.

Where the end of a request cannot be known (a malformed head or chunked framing, a head over
gunicorn's limits, a body over BRIDGE_MAX_BODY_BYTES), the thread gets what has arrived and
answers it (gunicorn's 400 for a bad head; the app's 413 or 400 for the body, see
``bridge/http/body.py``), and the connection is closed after that answer. A chunked body over the
limit is handed on once more than the limit (plus a margin) has arrived, so the app can see it is
too large.

TLS, HTTP/2, the PROXY protocol and the uwsgi protocol are left to plain gthread: the bridge runs
behind its platform's router, which speaks plain HTTP/1.1 to it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import selectors
import socket
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future
from enum import Enum
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from config.settings import load_settings

log = logging.getLogger("bridge.http")

RECV_BYTES = 64 * 1024
SPOOL_BYTES = 1024 * 1024  # a body larger than this waits for its thread in a temporary file
# a chunked body is handed on once this much more than the limit has arrived: the app reads one
# byte past the limit to know it is too large, and gunicorn's reader asks for up to 64 KiB at once
OVER_LIMIT_MARGIN = 128 * 1024
CHUNK_LINE_LIMIT = DEFAULT_MAX_HEADERFIELD_SIZE  # gunicorn's own limit on a chunk-size line
# a closed connection's unread input (the rest of a body too large to read) is drained for this
# long, so that the kernel does not answer it with a reset that could destroy the answer just sent
LINGER_SECONDS = 2.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _answer(status: str, error: str, message: str) -> bytes:
    body = json.dumps({"error": error, "message": message}).encode()
    head = f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


TIMED_OUT = _answer(
    "408 Request Timeout", "request_timeout", "the request did not arrive within BRIDGE_REQUEST_READ_TIMEOUT_SECONDS"
)


class Framing(Enum):
    COMPLETE = "complete"  # the request has arrived whole; what follows it is the next request
    UNREADABLE = "unreadable"  # where the request ends cannot be known: answer what arrived, then close


class RequestBytes:
    """One HTTP/1.1 request as its bytes arrive: :meth:`feed` says when it is whole.

    The framing rules are gunicorn's (``gunicorn/http/message.py`` and ``body.py``), which then
    parses the same bytes; where the two could disagree the outcome is UNREADABLE, so gunicorn
    and the app answer from what arrived.
    """

    def __init__(self, head_limit: int, line_limit: int, body_limit: int) -> None:
        self.head = bytearray()
        self.body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (closed by close())
        self.body_bytes = 0
        self.rest = b""  # what arrived after the request: the start of the next one
        self.expects_continue = False  # the client waits for "100 Continue" before its body
        self.outcome: Framing | None = None
        self._head_limit, self._line_limit, self._body_limit = head_limit, line_limit, body_limit
        self._state = "head"
        self._remaining = 0  # of the Content-Length body, or of the current chunk
        self._line = bytearray()  # a chunk-size line, a chunk's CRLF or the trailer section so far
        self._decoded = 0  # chunk data bytes so far

    @property
    def started(self) -> bool:
        return bool(self.head)

    def feed(self, data: bytes) -> Framing | None:
        """Take the next bytes received; the outcome once the end of the request is known."""
        if self._state == "head":
            data = self._take_head(data)
        while self.outcome is None and data:
            data = getattr(self, f"_take_{self._state}")(data)
        if self.outcome is Framing.COMPLETE:
            self.rest = data
        elif self.outcome is Framing.UNREADABLE and data:
            self._write(data)
        return self.outcome

    def pieces(self) -> Iterator[bytes]:
        """The request's bytes, for gunicorn's parser."""
        yield bytes(self.head)
        self.body.seek(0)
        while piece := self.body.read(RECV_BYTES):
            yield piece

    def close(self) -> None:
        self.body.close()

    def _write(self, data: bytes) -> None:
        self.body.write(data)
        self.body_bytes += len(data)

    def _take_head(self, data: bytes) -> bytes:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            too_long = len(self.head) > self._head_limit
            line_too_long = b"\r\n" not in self.head[2:] and len(self.head) > self._line_limit + 4
            if too_long or line_too_long or self.head.count(b"\n") != self.head.count(b"\r\n"):
                self.outcome = Framing.UNREADABLE  # gunicorn answers 400, 414 or 431
            return b""
        rest = bytes(self.head[end + 4 :])
        del self.head[end + 4 :]
        self._frame(bytes(self.head[:end]))
        return rest

    def _frame(self, head: bytes) -> None:
        """How the body is framed, from the head's Content-Length and Transfer-Encoding."""
        lines = head.split(b"\r\n")
        if lines[0] == b"":  # one empty line may come before the request line
            lines = lines[1:]
        if not lines or b"\n" in head.replace(b"\r\n", b""):
            self.outcome = Framing.UNREADABLE
            return
        version = lines[0].rpartition(b" ")[2]
        lengths: list[bytes] = []
        codings: list[bytes] = []
        expect = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name != name.strip():
                self.outcome = Framing.UNREADABLE
                return
            name, value = name.lower(), value.strip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings += [coding.strip(b" \t").lower() for coding in value.split(b",")]
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        if codings:
            if lengths or codings[-1] != b"chunked" or codings.count(b"chunked") > 1 or version != b"HTTP/1.1":
                self.outcome = Framing.UNREADABLE
                return
            self._state = "size_line"
        elif lengths:
            if len(lengths) > 1 or not lengths[0].isdigit() or int(lengths[0]) > self._body_limit:
                self.outcome = Framing.UNREADABLE  # a body over the limit: the app answers 413 from its length
                return
            self._remaining = int(lengths[0])
            if not self._remaining:
                self.outcome = Framing.COMPLETE
                return
            self._state = "length"
        else:
            self.outcome = Framing.COMPLETE
            return
        self.expects_continue = expect and version == b"HTTP/1.1"

    def _take_length(self, data: bytes) -> bytes:
        taken = data[: self._remaining]
        self._write(taken)
        self._remaining -= len(taken)
        if not self._remaining:
            self.outcome = Framing.COMPLETE
        return data[len(taken) :]

    def _take_size_line(self, data: bytes) -> bytes:
        end = data.find(b"\n")
        taken = data if end < 0 else data[: end + 1]
        self._write(taken)
        self._line += taken
        if end < 0:
            if len(self._line) > self._line_limit:
                self.outcome = Framing.UNREADABLE
            return b""
        line, self._line = bytes(self._line), bytearray()
        size, semicolon, _ = line[:-2].partition(b";")
        if semicolon:
            size = size.rstrip(b" \t")
        if not line.endswith(b"\r\n") or not size or size.strip(b"0123456789abcdefABCDEF"):
            self.outcome = Framing.UNREADABLE  # the app answers 400
            return data[end + 1 :]
        self._remaining = int(size, 16)
        self._state = "data" if self._remaining else "trailer"
        return data[end + 1 :]

    def _take_data(self, data: bytes) -> bytes:
        taken = data[: self._remaining]
        self._write(taken)
        self._remaining -= len(taken)
        self._decoded += len(taken)
        if self._decoded > self._body_limit + OVER_LIMIT_MARGIN or self.body_bytes > 2 * self._body_limit + SPOOL_BYTES:
            self.outcome = Framing.UNREADABLE  # the app answers 413
        elif not self._remaining:
            self._state = "data_end"
        return data[len(taken) :]

    def _take_data_end(self, data: bytes) -> bytes:
        taken = data[: 2 - len(self._line)]
        self._write(taken)
        self._line += taken
        if not b"\r\n".startswith(self._line):
            self.outcome = Framing.UNREADABLE
        elif len(self._line) == 2:
            self._line = bytearray()
            self._state = "size_line"
        return data[len(taken) :]

    def _take_trailer(self, data: bytes) -> bytes:
        before = len(self._line)
        self._line += data
        if self._line.startswith(b"\r\n"):
            end = 2
        else:
            found = self._line.find(b"\r\n\r\n")
            end = found + 4 if found >= 0 else -1
        if end < 0:
            self._write(data)
            if len(self._line) > self._head_limit:
                self.outcome = Framing.UNREADABLE
            return b""
        self._write(data[: end - before])
        self.outcome = Framing.COMPLETE
        return data[end - before :]


class BufferedConn(TConn):
    """A connection of :class:`BufferingThreadWorker`: the request being read, and what follows it."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.incoming: RequestBytes | None = None
        self.next_bytes = b""  # received after the request a thread has: the next one's start
        self.close_after = False
        self.deadline = 0.0


class BufferingThreadWorker(ThreadWorker):
    """gthread, with every request read whole by the main loop before a thread takes it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = load_settings()
        self.body_limit = settings.max_body_bytes
        self.read_timeout = settings.request_read_timeout
        cfg = self.cfg
        self.buffering = (
            not cfg.is_ssl
            and cfg.proxy_protocol == "off"
            and getattr(cfg, "protocol", "http") == "http"
            and "h2" not in cfg.http_protocols
        )
        fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= MAX_HEADERS else MAX_HEADERS
        field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else DEFAULT_MAX_HEADERFIELD_SIZE
        self.line_limit = cfg.limit_request_line if 0 < cfg.limit_request_line < MAX_REQUEST_LINE else MAX_REQUEST_LINE
        self.head_limit = self.line_limit + fields * (field_size + 2) + 4
        # connections by deadline: each is added with now + a constant, so insertion order is deadline order
        self.reading: dict[BufferedConn, None] = {}
        self.lingering: dict[BufferedConn, None] = {}

    # --- the main loop: reading requests ---------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        if not self.buffering:
            super().accept(listener)
            return
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read_request(BufferedConn(self.cfg, sock, client, listener.getsockname()), b"")

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection's next request begins."""
        if not isinstance(conn, BufferedConn):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_request(conn, b"", readable=True)

    def _read_request(self, conn: BufferedConn, received: bytes, readable: bool = False) -> None:
        """Start reading ``conn``'s next request, ``received`` being its first bytes. On a
        ``readable`` socket, a small request is usually whole at the first read: it goes to a
        thread without the poller's registering and unregistering the socket."""
        conn.incoming = RequestBytes(self.head_limit, self.line_limit, self.body_limit)
        conn.close_after = False
        conn.deadline = time.monotonic() + self.read_timeout
        conn.sock.setblocking(False)
        self.reading[conn] = None
        if received:
            self._take(conn, received)
        if readable and conn in self.reading:
            self._on_readable(conn, conn.sock)
        if conn in self.reading:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: BufferedConn, _sock: socket.socket) -> None:
        data = _receive(conn.sock)
        if data is None:
            return
        if data:
            self._take(conn, data)
        else:
            self._drop(conn)  # closed before the request was whole: nobody is waiting for an answer

    def _take(self, conn: BufferedConn, data: bytes) -> None:
        incoming = conn.incoming
        assert incoming is not None
        framing = incoming.feed(data)
        if framing is None:
            if incoming.expects_continue:
                incoming.expects_continue = False
                _send_quietly(conn.sock, CONTINUE)
            return
        self._stop_reading(conn)
        conn.next_bytes = incoming.rest
        conn.close_after = framing is Framing.UNREADABLE
        self.enqueue_req(conn)

    def _stop_reading(self, conn: BufferedConn) -> None:
        self.reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: BufferedConn) -> None:
        """Close a connection whose request is still being read, without an answer."""
        self._stop_reading(conn)
        self.nr_conns -= 1
        if conn.incoming is not None:
            conn.incoming.close()
            conn.incoming = None
        conn.close()

    def murder_pending(self) -> None:
        """Called by the main loop at least once a second: also ends requests that took too long
        to arrive, connections at shutdown that have not started one, and lingering closes."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            conn = next(iter(self.reading))
            if conn.deadline > now:
                break
            self._time_out(conn)
        if not self.alive:
            for conn in [c for c in self.reading if c.incoming is not None and not c.incoming.started]:
                self._drop(conn)
        while self.lingering:
            conn = next(iter(self.lingering))
            if conn.deadline > now:
                break
            self._end_linger(conn)

    def _time_out(self, conn: BufferedConn) -> None:
        if conn.incoming is None or not conn.incoming.started:
            self._drop(conn)  # a connection that never sent a byte: nobody is waiting for an answer
            return
        self._stop_reading(conn)
        self.nr_conns -= 1
        conn.incoming.close()
        conn.incoming = None
        _send_quietly(conn.sock, TIMED_OUT)
        log.info(
            "request from %s not received within %g s: answered 408",
            conn.client[0] if isinstance(conn.client, tuple) else conn.client,
            self.read_timeout,
            extra={"status": 408},
        )
        self._linger(conn)

    # --- a thread: answering a request that has arrived ------------------------------------

    def handle(self, conn: TConn) -> Any:
        incoming = getattr(conn, "incoming", None)
        if incoming is None:
            return super().handle(conn)
        conn.parser = http.get_parser(self.cfg, incoming.pieces(), conn.client)
        conn.initialized = conn.data_ready = True
        try:
            return super().handle(conn)
        finally:
            incoming.close()
            conn.incoming = None

    def handle_request(self, req: Any, conn: TConn) -> Any:
        if isinstance(conn, BufferedConn):
            req._expected_100_continue = False  # the body is here: any 100 Continue has been sent
            if conn.close_after:
                req.force_close()  # answered with "Connection: close"
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: TConn, keepalive: Any) -> bool:
        if not isinstance(conn, BufferedConn):
            return bool(super()._keepalive_after(conn, keepalive))
        if not keepalive or conn.close_after:
            return False
        try:  # what the app left of the body is in memory: read past it at no cost to anyone
            return bool(conn.parser.finish_body())
        except Exception:  # the answer is sent: a body gunicorn frames otherwise only ends the connection
            return False

    # --- the main loop again: after the answer ---------------------------------------------

    def finish_request(self, conn: TConn, fs: Future[Any]) -> None:
        if not isinstance(conn, BufferedConn):
            super().finish_request(conn, fs)
            return
        try:
            keep = not fs.cancelled() and fs.result() is True
            if keep and conn.next_bytes:
                received, conn.next_bytes = conn.next_bytes, b""
                self._read_request(conn, received)
            elif keep:
                conn.sock.setblocking(False)
                conn.set_timeout()
                if not self.alive:
                    conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
                self.keepalived_conns.append(conn)
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
            else:
                self.nr_conns -= 1
                self._linger(conn)
        except Exception:
            self.nr_conns -= 1
            conn.close()

    def _linger(self, conn: BufferedConn) -> None:
        """Close without blocking the main loop: FIN now, then drain what the client still sends
        for a moment (gthread's own graceful close waits for that in the main loop)."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.lingering[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_lingering_readable, conn))

    def _on_lingering_readable(self, conn: BufferedConn, _sock: socket.socket) -> None:
        data = _receive(conn.sock)
        if data is None:
            return
        if not data:
            self._end_linger(conn)

    def _end_linger(self, conn: BufferedConn) -> None:
        self.lingering.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)
        conn.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """As much of ``data`` as the socket takes now: an answer to a client that may be gone."""
    with contextlib.suppress(OSError):
        sock.send(data)


def _receive(sock: socket.socket) -> bytes | None:
    """What a non-blocking socket holds now: bytes, ``b""`` at the end of the stream (or when the
    connection broke), None when nothing has arrived yet."""
    try:
        return sock.recv(RECV_BYTES)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
