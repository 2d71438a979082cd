"""Helpers for tests that need the app on a real port or real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@contextmanager
def serve_app(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a loopback port in a thread (threaded: requests really run at once)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def web_is_up(base: str) -> bool:
    """``GET /healthz`` answers 200. Not yet listening, or a process still loading the app (its
    listening socket accepts, but nothing answers within the second), is "not up"."""
    import requests

    try:
        return requests.get(f"{base}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


# a flask command started from the project root would read a developer's .env (written by
# `make run`): the tests' processes get only the environment the test gives them
NO_DOTENV = {"FLASK_SKIP_DOTENV": "1"}


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a bridge command from the project root, output to ``log``."""
    full_env = {"PATH": f"{BIN}:{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1", **NO_DOTENV, **env}
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)


def flask_cmd(*args: str) -> list[str]:
    return [str(BIN / "flask"), "--app", "wsgi", "bridge", *args]


ALERT_PASSWORD = "alert-pass-0123456789"


class Receiver:
    """An HTTP server on loopback that records the JSON apprise posts; ``status`` is its answer."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.requests = 0
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests += 1
                if receiver.status == 200:
                    receiver.posts.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The apprise URL, with a password in it (apprise sends it as HTTP Basic)."""
        return f"json://bridge:{ALERT_PASSWORD}@127.0.0.1:{self.server.server_port}/alerts"

    def texts(self) -> list[str]:
        return [f"{p['title']}\n{p['message']}" for p in self.posts]
