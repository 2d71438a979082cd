"""The web process's gunicorn worker spreads a burst of keep-alive connections over the workers."""

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
        time.sleep(0.05)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


def _request(sock: socket.socket) -> str:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
    return next(int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length"))


def test_a_burst_of_keep_alive_connections_reaches_every_worker(tmp_path: Path) -> None:
    """Eight connections opened at once, two workers of two threads: plain gthread often lets the
    first worker to wake take all eight (and keep them); this worker takes at most one per free
    thread, so each worker serves at least two of the connections."""
    (tmp_path / "pid_app.py").write_text(PID_APP)
    (tmp_path / "settings.py").write_text("")  # not the project's gunicorn.conf.py and its checks
    port, log = free_port(), tmp_path / "gunicorn.log"
    args = [str(BIN / "gunicorn"), "--config", str(tmp_path / "settings.py"), "--chdir", str(tmp_path)]
    args += ["--bind", f"127.0.0.1:{port}"]
    args += ["--worker-class", "bridge.gunicorn_worker.BalancedThreadWorker", "--workers", "2", "--threads", "2"]
    proc = start_process([*args, "pid_app:app"], {"PYTHONPATH": str(ROOT)}, log)
    try:
        wait_for(lambda: log.read_text().count("Booting worker") == 2, timeout=30)
        wait_for(lambda: _request(socket.create_connection(("127.0.0.1", port), timeout=5)), timeout=10)
        conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
        served_by = [_request(sock) for sock in conns]  # one request each, in order
        for _ in range(3):  # keep-alive: each connection stays with its worker
            assert [_request(sock) for sock in conns] == served_by
        for sock in conns:
            sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    per_worker = Counter(served_by)
    assert len(per_worker) == 2 and min(per_worker.values()) >= 2, per_worker
