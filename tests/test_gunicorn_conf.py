"""gunicorn.conf.py's settings spread a burst of keep-alive connections over the web processes."""

from __future__ import annotations

import signal
import socket
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import BIN, ROOT, free_port, start_process, wait_for

pytestmark = pytest.mark.slow

# answers with the pid of the worker that served the request, a little slowly, like a real hook
PID_APP = textwrap.dedent(
    """
    import os, time

    def app(environ, start_response):
        time.sleep(0.02)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)
CONNECTIONS = 48


def _request(sock: socket.socket) -> str:
    _send(sock)
    return _read(sock)


def _send(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")


def _read(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
    return next(int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length"))


def test_a_burst_of_keep_alive_connections_reaches_every_web_process(tmp_path: Path) -> None:
    """On one shared listening socket, the first gthread worker to wake often takes a whole burst
    of connections (and keeps them, since they stay open). With the project's settings each of
    the two processes gets at least a quarter of 48 connections opened at once."""
    port, log = free_port(), tmp_path / "gunicorn.log"
    (tmp_path / "pid_app.py").write_text(PID_APP)
    # gunicorn.conf.py's settings without its hooks (which check and start the bridge itself): the
    # benchmark's floor runs on the same file
    args = [str(BIN / "gunicorn"), "--config", str(ROOT / "bench" / "gunicorn_bare.py"), "--chdir", str(tmp_path)]
    env = {"PYTHONPATH": str(ROOT), "BENCH_BARE_PORT": str(port), "WEB_CONCURRENCY": "2"}
    proc = start_process([*args, "pid_app:app"], env, log)
    try:
        wait_for(lambda: log.read_text().count("Booting worker") == 2, timeout=30)
        wait_for(lambda: _request(socket.create_connection(("127.0.0.1", port), timeout=5)), timeout=10)
        conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CONNECTIONS)]
        for sock in conns:  # all at once, as a burst
            _send(sock)
        served_by = [_read(sock) for sock in conns]
        for _ in range(2):  # keep-alive: each connection stays with its process
            assert [_request(sock) for sock in conns] == served_by
        for sock in conns:
            sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    per_process = Counter(served_by)
    # by chance alone (a fair coin per connection) a split this uneven happens about once in 3,000
    # runs; on one shared socket it was the rule (3, 2 and 5 of 48 on the second process)
    assert len(per_process) == 2 and min(per_process.values()) >= CONNECTIONS // 4, per_process
