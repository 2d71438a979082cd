"""The ``web`` process's gunicorn worker: gthread, except that a busy worker leaves new connections
to the others.

gunicorn's workers share one listening socket, and a gthread worker accepts whatever connection
it sees while it has fewer than ``worker_connections`` (1,000) open. A burst of new keep-alive
connections (a load balancer's pool, a provider flushing its queue over a few connections) is
then often taken by one worker entirely, and stays there: seen here with 16 connections and two
workers, one worker served every request while the other sat idle, about half the throughput.
This worker stops accepting while each of its threads has a request, so the next connection
goes to a worker with a free thread. Kept-alive connections and requests already accepted are
handled as before.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # requests handed to the thread pool and not finished; main thread only

    def enqueue_req(self, conn: Any) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)
        if self.in_flight >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn's loop asks again on every turn while it is below worker_connections
        super().set_accept_enabled(enabled and self.in_flight < self.cfg.threads)
