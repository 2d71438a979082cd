"""The web process as deployed: gunicorn.conf.py and wsgi:app, spoken to over raw sockets.

Slow clients must not take the threads that answer everyone else, and a request body is stored
whole or refused, whatever its framing (chunked or Content-Length).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from bridge.app import create_app
from bridge.db import events
from bridge.migrate import upgrade
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import SandboxServer
from tests.conftest import DEFAULT_SOURCES, bridge_env
from tests.helpers import BIN, free_port, start_process, wait_for, web_is_up

pytestmark = pytest.mark.slow

LIMIT = 64 * 1024  # BRIDGE_MAX_BODY_BYTES
READ_TIMEOUT = 4  # BRIDGE_REQUEST_READ_TIMEOUT_SECONDS
SLOW_CLIENTS = 64
T = TypeVar("T")


@dataclass
class Web:
    port: int
    log: Path
    runtime: Runtime

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def bodies(self, source: str) -> list[bytes]:
        """Each stored body: the raw bytes where they are kept, else (a json or form body is kept
        as its message alone, docs/limits.md) the message's fields in the framing of ``sample``."""
        query = select(events.c.raw_body, events.c.message, events.c.raw_request).where(events.c.source == source)
        with self.runtime.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [bytes(body) if body else _as_sent(message, raw) for body, message, raw in rows]


def _as_sent(message: dict[str, Any], raw_request: dict[str, Any]) -> bytes:
    fields = message.get("fields") or {}
    content_type = raw_request["headers"].get("Content-Type", "")
    return (json.dumps(fields) if "json" in content_type else urlencode(fields)).encode()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, sandbox_server: SandboxServer) -> Iterator[Web]:
    """gunicorn with the project's settings: 2 processes of 4 threads."""
    tmp = tmp_path_factory.mktemp("web")
    sources = tmp / "sources.yml"
    sources.write_text(textwrap.dedent(DEFAULT_SOURCES))
    port = free_port()
    env = bridge_env(
        f"sqlite:///{tmp / 'bridge.db'}",
        sandbox_server.url,
        sources,
        PORT=str(port),
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="4",
        BRIDGE_MAX_BODY_BYTES=str(LIMIT),
        BRIDGE_REQUEST_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT),
    )
    app = create_app(env=env)
    runtime = get_runtime(app)
    upgrade(runtime.store.engine)
    log = tmp / "web.log"
    proc = start_process([str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"], env, log)
    web = Web(port, log, runtime)
    try:
        wait_for(lambda: log.read_text().count("Booting worker") == 2 and web_is_up(web.base), timeout=30)
        yield web
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        runtime.store.engine.dispose()


class Answers:
    """The answers arriving on one connection, in order (pipelined ones may share a read)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def next(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names), body by its Content-Length."""
        while b"\r\n\r\n" not in self.data:
            self.data += _recv(self.sock)
        head, self.data = self.data.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.data) < length:
            self.data += _recv(self.sock)
        body, self.data = self.data[:length], self.data[length:]
        return int(status_line.split()[1]), headers, body


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "connection closed before the answer was complete"
    return chunk


def exchange(web: Web, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with web.connect() as sock:
        sock.sendall(request)
        answers = Answers(sock)
        answer = answers.next()
        assert not answers.data, f"more than one answer: {answers.data!r}"
        return answer


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def post_head(path: str, content_type: str, framing: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: bridge.test", f"Content-Type: {content_type}", "Accept: application/json"]
    return ("\r\n".join([*lines, framing, *extra]) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 4096) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def sample(kind: str, marker: str, size: int) -> tuple[str, bytes]:
    """A body for the ``open`` (json) or ``contact`` (form) source of about ``size`` bytes."""
    filler = "x" * size
    if kind == "json":
        return "application/json", json.dumps({"email": f"{marker}@example.com", "message": filler}).encode()
    return "application/x-www-form-urlencoded", f"email={marker}%40example.com&message={filler}".encode()


SOURCE = {"json": "open", "form": "contact"}


# --- slow clients ------------------------------------------------------------------------------


class SlowClients:
    """Connections that send a partial request head, then one byte a second each."""

    def __init__(self, web: Web, count: int) -> None:
        self.socks = [web.connect(timeout=10) for _ in range(count)]
        for sock in self.socks:
            sock.sendall(b"POST /hooks/open HTTP/1.1\r\nHost: bridge.test\r\nX-Slow: ")
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        while not self.stopped.wait(1.0):
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    def stop_dripping(self) -> None:
        self.stopped.set()
        self.thread.join(5)

    def close(self) -> None:
        self.stop_dripping()
        for sock in self.socks:
            sock.close()


def timed(what: str, call: Callable[[], T], bound: float = 1.0) -> T:
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"{what} took {elapsed:.2f} s"
    return result


def test_slow_clients_do_not_delay_anyone_else_and_are_dropped(web: Web) -> None:
    """64 clients sending a byte a second (8 were enough to take every thread of 2 x 4) while
    ordinary requests of every framing are answered within a second; then each slow client gets
    a 408 once BRIDGE_REQUEST_READ_TIMEOUT_SECONDS has passed."""
    slow = SlowClients(web, SLOW_CLIENTS)
    connected = time.monotonic()
    try:
        time.sleep(1.5)  # every slow request has begun, and dripped
        health = timed("GET /healthz", lambda: requests.get(f"{web.base}/healthz", timeout=5))
        assert health.status_code == 200
        body = {"email": "fast@example.com", "subject": "Not delayed", "message": "Hi"}
        hook = timed("POST /hooks/open", lambda: requests.post(f"{web.base}/hooks/open", json=body, timeout=5))
        assert hook.status_code == 200, hook.text

        with web.connect() as sock:  # one keep-alive connection: 100-continue, then pipelined requests
            answers = Answers(sock)
            content_type, form = sample("form", "continued", 2000)
            sock.sendall(
                post_head("/hooks/contact", content_type, f"Content-Length: {len(form)}", "Expect: 100-continue")
            )
            assert timed("100 Continue", lambda: sock.recv(100)) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(form)
            assert timed("the form", answers.next)[0] == 200
            content_type, data = sample("json", "pipelined", 3000)
            trailer = chunked(data, 1000).replace(b"\r\n0\r\n\r\n", b"\r\n0\r\nX-Checksum: 1\r\n\r\n")
            extension = trailer.replace(b"3e8\r\n", b"3e8;name=value\r\n", 1)
            sock.sendall(
                post_head("/hooks/open", content_type, "Transfer-Encoding: chunked")
                + extension
                + b"GET /healthz HTTP/1.1\r\nHost: bridge.test\r\n\r\n"
            )
            assert timed("the pipelined post", answers.next)[0] == 200
            assert timed("the pipelined get", answers.next)[:1] == (200,)
        assert [data] == [b for b in web.bodies("open") if b"pipelined" in b]
        assert [form] == [b for b in web.bodies("contact") if b"continued" in b]

        slow.stop_dripping()
        answers = []
        for sock in slow.socks:
            sock.settimeout(max(0.1, connected + READ_TIMEOUT + 5 - time.monotonic()))
            answers.append(_read_to_end(sock))
        dropped_after = time.monotonic() - connected
    finally:
        slow.close()
    assert all(answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") for answer in answers), answers[:3]
    assert READ_TIMEOUT <= dropped_after < READ_TIMEOUT + 5
    assert web.log.read_text().count("answered 408") >= SLOW_CLIENTS


# --- bodies: whole or refused --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json", "form"])
def test_a_chunked_body_is_stored_whole_or_refused_413(web: Web, kind: str) -> None:
    content_type, fits = sample(kind, f"fits-{kind}", LIMIT - 200)
    status, _, answer = exchange(
        web, post_head(f"/hooks/{SOURCE[kind]}", content_type, "Transfer-Encoding: chunked") + chunked(fits)
    )
    assert status == 200, answer
    assert [fits] == [b for b in web.bodies(SOURCE[kind]) if f"fits-{kind}".encode() in b]

    content_type, over = sample(kind, f"over-{kind}", LIMIT + 10)
    head = post_head(f"/hooks/{SOURCE[kind]}", content_type, "Transfer-Encoding: chunked")
    status, _, answer = exchange(web, head + chunked(over))
    assert (status, json.loads(answer)["error"]) == (413, "payload_too_large")
    assert not [b for b in web.bodies(SOURCE[kind]) if f"over-{kind}".encode() in b]


@pytest.mark.parametrize("kind", ["json", "form"])
def test_an_invalid_chunk_size_is_400_with_one_log_line(web: Web, kind: str) -> None:
    content_type, _ = sample(kind, "unused", 10)
    head = post_head(f"/hooks/{SOURCE[kind]}", content_type, "Transfer-Encoding: chunked")
    status, headers, answer = exchange(web, head + b"zz\r\nabc\r\n0\r\n\r\n")
    assert (status, json.loads(answer)["error"]) == (400, "bad_payload")
    assert "chunked" in json.loads(answer)["message"]
    request_id = headers["x-request-id"]
    wait_for(lambda: request_id in web.log.read_text(), timeout=5)
    lines = [line for line in web.log.read_text().splitlines() if request_id in line]
    assert len(lines) == 1 and json.loads(lines[0])["status"] == 400, lines
    assert "Traceback" not in web.log.read_text()


def test_a_body_that_ends_before_its_length_is_never_stored(web: Web) -> None:
    content_type, whole = sample("form", "cut-short", 500)
    with web.connect() as sock:
        sock.sendall(post_head("/hooks/contact", content_type, f"Content-Length: {len(whole)}") + whole[:100])
        sock.shutdown(socket.SHUT_WR)
        answer = _read_to_end(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer
    assert not [b for b in web.bodies("contact") if b"cut-short" in b]
