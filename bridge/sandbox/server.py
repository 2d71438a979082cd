"""Serving a Sandbox: on werkzeug in a thread (tests), or under gunicorn (``bridge sandbox``)."""

from __future__ import annotations

import errno
import socket
import threading
from typing import TYPE_CHECKING, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bridge.sandbox.state import Sandbox, clock_ticket_id

if TYPE_CHECKING:
    from flask import Flask


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # tests and benchmarks do not want a log line per request


class SandboxServer:
    """Runs a Sandbox on a real loopback port in a background thread.

    Uses ``werkzeug.serving.make_server(threaded=True)``; also a context manager.
    """

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox, self.host, self.port = sandbox, host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL with the real bound port, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("SandboxServer is not started")
        return f"http://{self.host}:{self._server.port}"

    def start(self) -> Self:
        app = self.sandbox.app()
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="spp-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()  # serve_forever then closes the listening socket
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class PortUnavailable(Exception):
    """The sandbox cannot listen on the address it was given (most often: something already does)."""


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`PortUnavailable` when ``host:port`` cannot be bound.

    The probe sets SO_REUSEADDR (a port left in TIME_WAIT by a previous run is free) but not
    SO_REUSEPORT, so it fails while anything listens there, even a gunicorn with reuse_port.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "is already in use (another sandbox, or another `make run`?)"
        else:
            reason = f"cannot be listened on ({exc.strerror or exc})"
        raise PortUnavailable(f"{host}:{port} {reason}") from None


def serve(host: str, port: int, token: str, latency_ms: int, fail_rate: float, quiet: bool = False) -> None:
    """Serve a sandbox until Ctrl-C (``flask --app wsgi bridge sandbox``).

    Under gunicorn (one process, since the tickets live in memory, and many threads, since
    a slow sandbox holds one per request), which keeps connections alive as SPP's servers
    do; werkzeug's server closes every connection, so each delivery would pay for a new one.
    The tests' in-process :class:`SandboxServer` stays on werkzeug.

    Raises :class:`PortUnavailable` rather than share the port: with two sandboxes on one port
    (SO_REUSEPORT), the kernel would spread deliveries over two sets of tickets. Ticket ids
    start from the clock, so they do not repeat those of an earlier run.
    """
    from gunicorn.app.base import BaseApplication

    ensure_port_free(host, port)
    sandbox = Sandbox(token=token, latency_ms=latency_ms, fail_rate=fail_rate, first_id=clock_ticket_id)
    settings = {
        "bind": f"{host}:{port}",
        "reuse_port": False,
        "workers": 1,
        "worker_class": "gthread",
        "threads": 64,
        "keepalive": 75,
        "accesslog": None if quiet else "-",
        "control_socket_disable": True,
    }

    class SandboxApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return sandbox.app()

    print(f"SPP sandbox on http://{host}:{port} (token: {token})", flush=True)
    SandboxApplication().run()
