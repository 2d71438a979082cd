"""The delivery worker: claim due events, send each to SPP, record what happened.

One loop per process claims at most as many events as it has free delivery threads
(``BRIDGE_DELIVERY_CONCURRENCY``). It wakes up when told (a PostgreSQL NOTIFY, or an
in-process event set by the web layer) and otherwise polls every ``poll_seconds``.
On stop it sends nothing new, waits for in-flight requests for ``grace_seconds`` and
hands back whatever is still open as an ambiguous attempt, so another worker can go on.

While SPP refuses the API token, delivery is paused for every process (the queue claims
nothing); an idle worker then offers to send the probe every ``poll_seconds``, and one of all
workers gets to each ``probe_seconds`` (docs/behaviour.md section 5).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from queue import Queue

from sqlalchemy.exc import SQLAlchemyError

from bridge.chores import Chores
from bridge.metrics import ATTEMPTS, DELIVERY_SECONDS, FINISHED
from bridge.retry import Decision, RetryPolicy, decide
from bridge.spp_client import Outcome, SppClient
from bridge.status import AttemptOutcome, Status, Step
from bridge.steps import StepResult, Steps
from bridge.store.queue import (
    DEFAULT_PROBE_SECONDS,
    NOTIFY_CHANNEL,
    Claim,
    DeliveryQueue,
    resumed_window_start,
    step_in_flight,
)

log = logging.getLogger("bridge.worker")


def utcnow() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        queue: DeliveryQueue,
        client: SppClient,
        policy: RetryPolicy,
        *,
        concurrency: int = 4,
        lease_seconds: float = 120.0,
        poll_seconds: float = 0.5,
        grace_seconds: float = 8.0,
        probe_seconds: float = DEFAULT_PROBE_SECONDS,
        wake: threading.Event | None = None,
        chores: Chores | None = None,
    ) -> None:
        self.queue = queue
        self.client = client
        self.policy = policy
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.probe_seconds = probe_seconds
        self.wake = wake or threading.Event()
        self.chores = chores or Chores()
        self.owner = worker_name()
        self.steps = Steps(client, queue.clients, queue.threads, self.owner, lease_seconds)
        self.stopping = threading.Event()
        self._inbox: Queue[Claim | None] = Queue()
        self._lock = threading.Lock()
        self._in_flight: dict[str, Claim] = {}
        self._threads: list[threading.Thread] = []
        # expired leases are looked for a few times per lease, not on every claim
        self._sweep_every = min(5.0, lease_seconds / 4)
        self._next_sweep = 0.0

    # --- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Deliver until :meth:`stop` is called, then shut down gracefully."""
        self._start_threads()
        self.chores.start(self.stopping)
        log.info("worker %s started: %d deliveries in flight at most", self.owner, self.concurrency)
        while not self.stopping.is_set():
            claimed = self._claim_due()
            if not claimed:
                self.wake.wait(self.poll_seconds)
                self.wake.clear()
        self._shutdown()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Deliver everything that is due now, then return (tests and one-off runs)."""
        self._start_threads()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            claimed = self._claim_due()
            with self._lock:
                idle = not self._in_flight and self._inbox.empty()
            if not claimed and idle:
                break
            time.sleep(0.01)
        self.stop()
        self._shutdown()

    def _claim_due(self) -> int:
        """Claim events for idle delivery threads (busy ones take their next event themselves)."""
        try:
            if time.monotonic() >= self._next_sweep:
                self.queue.expire_leases(utcnow())
                self._next_sweep = time.monotonic() + self._sweep_every
            with self._lock:
                free = self.concurrency - len(self._in_flight)
            if free <= 0:
                self.wake.wait(self.poll_seconds)
                self.wake.clear()
                return 0
            claims = self.queue.claim(self.owner, free, self.lease_seconds, utcnow())
            if not claims:  # nothing due, or delivery paused: then maybe this worker's turn to probe
                probe = self.queue.claim_probe(self.owner, self.lease_seconds, utcnow(), self.probe_seconds)
                claims = [probe] if probe else []
        except SQLAlchemyError as exc:
            log.warning("cannot claim events (database unavailable?): %s", type(exc).__name__)
            self.stopping.wait(min(5.0, self.poll_seconds * 4))
            return 0
        for claim in claims:
            with self._lock:
                self._in_flight[claim.event_id] = claim
            self._inbox.put(claim)
        return len(claims)

    # --- delivery threads ------------------------------------------------------------

    def _start_threads(self) -> None:
        if self._threads:
            return
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._deliver_loop, name=f"delivery-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _deliver_loop(self) -> None:
        claim = self._inbox.get()
        while claim is not None:
            taken = None
            try:
                taken = self.deliver(claim)
            except Exception:  # a bug must not kill the thread; the lease expiry recovers the event
                log.exception("delivery of %s crashed", claim.event_id, extra=_extra(claim))
            with self._lock:  # swapped in one step, so the claiming loop never sees a free slot here
                self._in_flight.pop(claim.event_id, None)
                if taken is not None:
                    self._in_flight[taken.event_id] = taken
            if taken is None:
                self.wake.set()
                claim = self._inbox.get()
            else:
                claim = taken

    def deliver(self, claim: Claim) -> Claim | None:
        """Carry one claimed event through its remaining steps (bridge/steps.py), recording each
        request; answer the next event this thread leased."""
        if self.stopping.is_set():
            self.queue.release(claim, utcnow())
            return None
        run = self.steps.start(claim)
        while True:
            result = run.next(utcnow())
            if result.outcome is None:
                self._settle(claim, result)
                return None
            outcome = result.outcome
            if outcome.ok and not result.final:
                self._observe(claim, result.step, outcome, AttemptOutcome.DELIVERED)
                if not self.queue.step_done(claim, outcome, result.step, result.changes, utcnow(), self.lease_seconds):
                    log.warning(
                        "lease on %s was lost after its %s step", claim.event_id, result.step, extra=_extra(claim)
                    )
                    return None
                if self.stopping.is_set():  # the next step is for another worker
                    self.queue.release(claim, utcnow())
                    return None
                continue
            return self._conclude(claim, result)

    def _conclude(self, claim: Claim, result: StepResult) -> Claim | None:
        """Record the request that ends this claim: the last step done, or a step that failed."""
        outcome = result.outcome
        assert outcome is not None
        if outcome.ok:
            claim.changes.update({k: v for k, v in result.changes.items() if v is not None})
        elif outcome.error:
            outcome.error = f"{result.step}: {outcome.error}"
        now = utcnow()
        window_start = claim.retry_window_start
        if claim.paused_since is not None:  # a probe: the time paused does not count (if it ends the pause)
            window_start = resumed_window_start(window_start, claim.paused_since, now)
        decision = decide(self.policy, outcome, claim.attempt_in_window, window_start, now)
        self._observe(claim, result.step, outcome, decision.status)
        if decision.status in (Status.DELIVERED, Status.FAILED):
            FINISHED.labels(decision.status).inc()
        if decision.token_refused:
            log.warning(
                "SPP refuses the API token (HTTP %s): delivery paused for every worker; a probe every %g s",
                outcome.http_status,
                self.probe_seconds,
                extra=_extra(claim),
            )
        elif claim.is_probe:
            log.info("probe for %s was not refused: delivery resumes", claim.event_id, extra=_extra(claim))
        taken = self._record(claim, outcome, decision, now, result.step)
        if claim.is_probe:
            self.wake.set()  # paused or resumed: the claim loop looks again at once
        return taken

    def _settle(self, claim: Claim, result: StepResult) -> None:
        """A step that ends the claim without a request: wait, fail for want of a client, or done."""
        now = utcnow()
        if result.wait_until is not None:
            status, reason = Status.RETRYING, result.reason or "waiting"
        elif result.failure is not None:
            status, reason = Status.FAILED, f"{result.step}: {result.failure}"
            FINISHED.labels(status).inc()
        else:
            status, reason = Status.DELIVERED, None
            FINISHED.labels(status).inc()
        log.info("%s: %s%s", claim.event_id, status, f" ({reason})" if reason else "", extra=_extra(claim))
        try:
            if not self.queue.settle(claim, status, now, reason or "", result.wait_until):
                log.warning("lease on %s was lost; not settled", claim.event_id, extra=_extra(claim))
        except SQLAlchemyError:  # nothing was sent: the lease expiry hands the event on
            log.error("could not settle %s; its lease will expire", claim.event_id, extra=_extra(claim))

    def _observe(self, claim: Claim, step: Step, outcome: Outcome, status: Status | AttemptOutcome) -> None:
        ATTEMPTS.labels("ambiguous" if outcome.ambiguous else outcome.result).inc()
        DELIVERY_SECONDS.observe(outcome.duration_ms / 1000)
        ids = {"ticket": outcome.ticket_id, "message": outcome.message_id, "client": outcome.client_id}
        done = next((f" {name} {value}" for name, value in ids.items() if value), "")
        log.info(
            "attempt %d for %s (%s): %s (HTTP %s, %d ms)%s",
            claim.attempt,
            claim.event_id,
            step,
            status,
            outcome.http_status or "-",
            outcome.duration_ms,
            done if outcome.ok else f": {outcome.error}",
            extra={
                **_extra(claim),
                "source": claim.source,
                "attempt": claim.attempt,
                "step": str(step),
                "outcome": str(status),
                "http_status": outcome.http_status,
                "duration_ms": outcome.duration_ms,
                "ticket_id": outcome.ticket_id,
            },
        )

    def _record(self, claim: Claim, outcome: Outcome, decision: Decision, now: datetime, step: Step) -> Claim | None:
        """Write the attempt and lease the next due event in the same transaction (none when
        stopping); keep trying while the database is away, since SPP may hold a ticket."""
        delay, give_up_at = 0.5, None
        while True:
            try:
                next_lease = None if self.stopping.is_set() else self.lease_seconds
                finished, taken = self.queue.record(claim, outcome, decision, now, next_lease, self.probe_seconds, step)
                if not finished:
                    log.warning("lease on %s was lost; attempt recorded only", claim.event_id, extra=_extra(claim))
                return taken
            except SQLAlchemyError as exc:
                if self.stopping.is_set():
                    give_up_at = give_up_at or time.monotonic() + self.grace_seconds
                    if time.monotonic() > give_up_at:  # the lease expiry hands the event on, as ambiguous
                        log.error("could not record attempt for %s: %s", claim.event_id, exc, extra=_extra(claim))
                        return None
                log.warning("database unavailable recording %s; retrying", claim.event_id, extra=_extra(claim))
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- shutdown --------------------------------------------------------------------

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    break
            time.sleep(0.05)
        with self._lock:
            left = list(self._in_flight.values())
        for claim in left:
            self._hand_back(claim)
        for _ in self._threads:
            self._inbox.put(None)
        self.chores.join(max(0.0, deadline - time.monotonic()) + 1.0)
        log.info("worker %s stopped (%d in-flight deliveries handed back)", self.owner, len(left))

    def _hand_back(self, claim: Claim) -> None:
        now = utcnow()
        lost = "worker stopped while waiting for SPP's answer"
        outcome = Outcome(AttemptOutcome.RETRYING, 0, ambiguous=True, error=lost)
        try:
            step = step_in_flight(claim.ticket_id, claim.client_id, claim.plan)
            decision = Decision(Status.RETRYING, next_attempt_at=now, reason=f"{step}: {lost}")
            self.queue.record(claim, outcome, decision, now, step=step)
        except SQLAlchemyError:
            log.error("could not hand back %s; its lease will expire", claim.event_id, extra=_extra(claim))


def _extra(claim: Claim) -> dict[str, str]:
    return {"event_id": claim.event_id, "request_id": claim.request_id or "-"}


class NotifyListener:
    """Sets ``wake`` on every PostgreSQL NOTIFY of new events; reconnects when the database returns."""

    def __init__(self, conninfo: str, wake: threading.Event, stopping: threading.Event) -> None:
        self.conninfo = conninfo
        self.wake = wake
        self.stopping = stopping

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        import psycopg

        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake.set()
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); polling until it is back", type(exc).__name__)
                self.stopping.wait(2.0)
