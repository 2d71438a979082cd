"""Fault suite: nothing lost, nothing doubled.

Each scenario injects one kind of fault (SPP refusing connections, a 503 storm, 429 with
Retry-After, hangs past the read timeout, connection resets, workers SIGKILLed again and again,
the database stopped under load) and ends with a count:

* events accepted: distinct event ids the hook answered 200 for;
* tickets created: distinct ``metadata.bridge_event_id`` values in this test's sandbox;
* duplicates: tickets beyond one per event, allowed only for events with an ambiguous attempt
  in their attempt log (those are counted; any other duplicate fails the test);
* events lost: accepted but not ``delivered`` at the end, or without a ticket in SPP: must be 0.

The short version runs in ``make test``. ``BRIDGE_FAULTS=long`` selects the long sizes and the
scenarios marked ``faults_long`` (the database stopped and started), which disturb other tests.
No mocks: a real sandbox on a real port, a real database, real worker processes where the
scenario is about workers; otherwise the in-process :class:`Worker` the processes run.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from bridge.db import attempts, events
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import SandboxServer
from bridge.worker import Worker
from tests.conftest import api_headers
from tests.faults.conftest import LONG
from tests.helpers import flask_cmd, start_process

pytestmark = pytest.mark.faults

Report = Callable[[dict[str, Any]], None]


def size(short: int, long: int) -> int:
    return long if LONG else short


# --- posting, waiting, counting ------------------------------------------------------------


class Sender:
    """A webhook sender: posts numbered events, each with an Idempotency-Key of its own.

    ``send`` answers the HTTP status; on 200 the event id joins ``accepted``. A sender that got
    a 503 sends the same request again later (same key), as real senders do.
    """

    def __init__(self, app: Flask, scenario: str) -> None:
        self.app = app
        self.tag = f"{scenario}-{secrets.token_hex(4)}"
        self.accepted: dict[int, str] = {}
        self.answers: Counter[int] = Counter()
        self.lock = threading.Lock()

    def send(self, n: int) -> int:
        body = {"email": "alice@example.com", "subject": f"Fault {self.tag} #{n}", "message": f"event {n}"}
        headers = api_headers(**{"Idempotency-Key": f"{self.tag}-{n}"})
        response = self.app.test_client().post("/hooks/api", json=body, headers=headers)
        with self.lock:
            self.answers[response.status_code] += 1
            if response.status_code == 200:
                event_id = str(response.get_json()["event_id"])
                assert self.accepted.setdefault(n, event_id) == event_id, "one key, two events"
        return response.status_code

    def send_ok(self, n: int) -> None:
        status = self.send(n)
        assert status == 200, f"event {n}: HTTP {status}"

    def ids(self) -> list[str]:
        with self.lock:
            return sorted(set(self.accepted.values()))


def statuses(runtime: Runtime) -> dict[str, int]:
    return runtime.store.queries.count_by_status()


def wait_until(condition: Callable[[], object], deadline: float, what: Callable[[], str] | str) -> None:
    """Poll ``condition`` until it holds or the scenario's deadline (a monotonic time) passes."""
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached before the scenario's deadline: {what() if callable(what) else what}")
        time.sleep(0.05)


def all_delivered(runtime: Runtime, sender: Sender, expected: int | None = None) -> Callable[[], bool]:
    def check() -> bool:
        n = len(sender.ids())
        return (expected is None or n == expected) and statuses(runtime) == {"delivered": n}

    return check


def settle(server: SandboxServer, quiet: float, deadline: float) -> None:
    """Wait until the sandbox has been quiet for ``quiet`` s: late tickets of hung requests land."""
    last = (-1, -1)
    since = time.monotonic()
    while time.monotonic() < deadline:
        snap = server.sandbox.snapshot()
        now = (len(snap["tickets"]), snap["requests_seen"])
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def attempt_log(runtime: Runtime) -> list[Any]:
    query = select(attempts).order_by(attempts.c.id)
    with runtime.store.engine.connect() as conn:
        return list(conn.execute(query).all())


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def count(
    scenario: str,
    runtime: Runtime,
    server: SandboxServer,
    sender: Sender,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """The scenario's closing count, from the database and the sandbox."""
    accepted = set(sender.ids())
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(select(events.c.id, events.c.status, events.c.ticket_id)).all()
    status = {r.id: r.status for r in rows}
    log = attempt_log(runtime)
    ambiguous_events = {a.event_id for a in log if a.ambiguous}
    tickets = server.sandbox.snapshot()["tickets"]
    per_event = Counter(str((t["request"].get("metadata") or {}).get("bridge_event_id")) for t in tickets)
    doubled = {e: c for e, c in per_event.items() if c > 1}
    ticket_ids: dict[str, set[int]] = {}
    for t in tickets:
        ticket_ids.setdefault(str((t["request"].get("metadata") or {}).get("bridge_event_id")), set()).add(t["id"])
    # a delivered event must record one of the tickets SPP holds for it
    mismatched = sorted(r.id for r in rows if r.status == "delivered" and r.ticket_id not in ticket_ids.get(r.id, ()))
    lost = sorted(e for e in accepted if status.get(e) != "delivered" or per_event[e] == 0)
    return {
        "scenario": scenario,
        "version": "long" if LONG else "short",
        "events_accepted": len(accepted),
        "events_in_database": len(status),
        "tickets_created": len(per_event),
        "tickets_total": len(tickets),
        "duplicates": sum(c - 1 for c in doubled.values()),
        "events_with_duplicates": len(doubled),
        "events_with_ambiguous_attempt": len(ambiguous_events),
        "unexplained_duplicates": sorted(e for e in doubled if e not in ambiguous_events),
        "tickets_for_unknown_events": sorted(e for e in per_event if e not in accepted),
        "recorded_ticket_id_not_in_spp": mismatched,
        "events_lost": len(lost),
        "lost": lost[:20],
        "attempts": len(log),
        "ambiguous_attempts": sum(1 for a in log if a.ambiguous),
        "ambiguous_reasons": dict(Counter(reason(a.error) for a in log if a.ambiguous)),
        "final_statuses": statuses(runtime),
        "sandbox_requests": server.sandbox.requests_seen,
        "inbound_answers": dict(sorted(sender.answers.items())),
        "duration_s": round(time.monotonic() - started, 2),
        **extra,
    }


def reason(error: str | None) -> str:
    """An attempt's error without the details that differ per attempt (ports, addresses)."""
    return (error or "-").split(":")[0]


def check_nothing_lost_nothing_doubled(summary: dict[str, Any]) -> None:
    assert summary["events_accepted"] > 0
    assert summary["events_lost"] == 0, f"events lost: {summary['lost']}"
    assert summary["unexplained_duplicates"] == [], "duplicates without an ambiguous attempt"
    assert summary["tickets_for_unknown_events"] == []
    assert summary["recorded_ticket_id_not_in_spp"] == [], "an event records a ticket SPP does not hold for it"
    assert summary["tickets_created"] == summary["events_accepted"]
    assert summary["events_in_database"] == summary["events_accepted"]
    assert summary["events_with_duplicates"] <= summary["events_with_ambiguous_attempt"]


# --- an in-process worker -------------------------------------------------------------------


@contextmanager
def worker_thread(runtime: Runtime) -> Iterator[Worker]:
    """The worker the ``worker`` process runs, in a thread, woken by this app's hooks."""
    worker = runtime.worker(poll_seconds=0.05)
    thread = threading.Thread(target=worker.run, name="fault-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(15)
    assert not thread.is_alive(), "the worker did not stop"


def restart_on(server: SandboxServer, port: int, deadline: float) -> SandboxServer:
    """A new SandboxServer for the same Sandbox on the same port (retried while the port is busy)."""
    while True:
        try:
            return SandboxServer(server.sandbox, port=port).start()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- 1. SPP down for a while ------------------------------------------------------------------


def test_spp_down_for_a_while(db_url, fault_app, fault_sandbox, fault_report, request) -> None:
    """The sandbox stops (connection refused) while events arrive and are delivered, then comes back."""
    scenario = f"spp_down-{request.node.callspec.id}"
    n, down_seconds = size(24, 90), (1.5 if not LONG else 5.0)
    # Production backoff (30 s .. 1 h) spans hours in 12 attempts; compressed to 0.05 .. 0.5 s it
    # needs more attempts to outlast the same outage, so the give-up limit is raised here.
    app = fault_app(db_url, BRIDGE_MAX_ATTEMPTS="200")
    runtime = get_runtime(app)
    sender = Sender(app, scenario)
    started = time.monotonic()
    deadline = started + size(40, 120)
    port = urlsplit(fault_sandbox.url).port or 0
    third = n // 3
    with worker_thread(runtime):
        for i in range(third):
            sender.send_ok(i)
        time.sleep(0.05)  # delivery is running when SPP goes away
        fault_sandbox.stop()
        down_at = time.monotonic()
        for i in range(third, n):
            sender.send_ok(i)
            time.sleep(down_seconds / (n - third) / 2)
        time.sleep(max(0.0, down_at + down_seconds - time.monotonic()))
        refused = sum(1 for a in attempt_log(runtime) if a.error and "could not connect" in a.error)
        server = restart_on(fault_sandbox, port, deadline)
        try:
            wait_until(all_delivered(runtime, sender, n), deadline, lambda: str(statuses(runtime)))
            settle(server, 0.3, deadline)
            summary = count(
                scenario,
                runtime,
                server,
                sender,
                started,
                down_seconds=down_seconds,
                refused_attempts_while_down=refused,
            )
        finally:
            server.stop()
    fault_report(summary)
    check_nothing_lost_nothing_doubled(summary)
    assert refused > 0, "no attempt met the stopped sandbox"
    assert summary["duplicates"] == 0  # a refused connection never reached SPP


# --- 2. a 503 storm ---------------------------------------------------------------------------


def test_503_storm(db_url, fault_app, fault_sandbox, fault_report, request) -> None:
    scenario = f"503_storm-{request.node.callspec.id}"
    n, storm_seconds = size(30, 150), (1.5 if not LONG else 5.0)
    app = fault_app(db_url, BRIDGE_MAX_ATTEMPTS="200")  # see test_spp_down_for_a_while
    runtime = get_runtime(app)
    sender = Sender(app, scenario)
    started = time.monotonic()
    deadline = started + size(40, 120)
    fault_sandbox.sandbox.fail_rate = 0.9
    with worker_thread(runtime):
        for i in range(n):
            sender.send_ok(i)
            time.sleep(storm_seconds / n / 2)
        time.sleep(max(0.0, started + storm_seconds - time.monotonic()))
        fault_sandbox.sandbox.fail_rate = 0.0
        wait_until(all_delivered(runtime, sender, n), deadline, lambda: str(statuses(runtime)))
        settle(fault_sandbox, 0.3, deadline)
    log = attempt_log(runtime)
    summary = count(
        scenario,
        runtime,
        fault_sandbox,
        sender,
        started,
        storm_seconds=storm_seconds,
        answers_503=sum(1 for a in log if a.http_status == 503),
    )
    fault_report(summary)
    check_nothing_lost_nothing_doubled(summary)
    assert summary["answers_503"] >= n // 2, "the storm hardly happened"
    assert summary["duplicates"] == 0 and summary["ambiguous_attempts"] == 0  # a 503 is a definite "no"


# --- 3. 429 with Retry-After ------------------------------------------------------------------


def test_429_retry_after_is_never_cut_short(db_url, fault_app, fault_sandbox, fault_report, request) -> None:
    """Every attempt after a 429 (Retry-After: 2) or a 503 (Retry-After: 1) waits at least that long.

    Both are longer than BRIDGE_RETRY_MAX_SECONDS (0.5 s), so only Retry-After explains the wait.
    """
    scenario = f"429_retry_after-{request.node.callspec.id}"
    n = size(6, 24)
    retry_after = {429: 2.0, 503: 1.0}
    app = fault_app(db_url)
    runtime = get_runtime(app)
    sender = Sender(app, scenario)
    # every first attempt meets a 429; the first n // 2 second attempts meet a 503
    fault_sandbox.sandbox.script(*(["429:2"] * n + ["503:1"] * (n // 2)))
    started = time.monotonic()
    deadline = started + size(30, 60)
    for i in range(n):
        sender.send_ok(i)
    with worker_thread(runtime):
        wait_until(all_delivered(runtime, sender, n), deadline, lambda: str(statuses(runtime)))
    settle(fault_sandbox, 0.2, deadline)
    by_event: dict[str, list[Any]] = {}
    for a in attempt_log(runtime):
        by_event.setdefault(a.event_id, []).append(a)
    waits: list[tuple[int, float]] = []
    for log in by_event.values():
        for before, after in pairwise(log):
            if before.http_status in retry_after:
                answered = utc(before.started_at) + timedelta(milliseconds=before.duration_ms)
                waits.append((before.http_status, (utc(after.started_at) - answered).total_seconds()))
    too_soon = [(status, round(gap, 3)) for status, gap in waits if gap < retry_after[status] - 0.002]
    summary = count(
        scenario,
        runtime,
        fault_sandbox,
        sender,
        started,
        retry_after_waits=len(waits),
        shortest_wait_after_429=round(min((g for s, g in waits if s == 429), default=-1), 3),
        shortest_wait_after_503=round(min((g for s, g in waits if s == 503), default=-1), 3),
        attempts_sooner_than_retry_after=len(too_soon),
    )
    fault_report(summary)
    check_nothing_lost_nothing_doubled(summary)
    assert too_soon == [], f"attempts sooner than Retry-After asked: {too_soon}"
    assert len(waits) == n + n // 2, "every scripted answer is followed by exactly one later attempt"
    assert summary["duplicates"] == 0


# --- 4. hangs past the read timeout -----------------------------------------------------------


def test_hangs_past_the_read_timeout(db_url, fault_app, fault_sandbox, fault_report, request) -> None:
    """SPP creates the ticket but answers after the read timeout: ambiguous, retried, counted."""
    scenario = f"hangs-{request.node.callspec.id}"
    n = size(8, 40)
    app = fault_app(db_url, BRIDGE_SPP_READ_TIMEOUT_SECONDS="0.5", BRIDGE_LEASE_SECONDS="2")
    runtime = get_runtime(app)
    sender = Sender(app, scenario)
    # the first n requests: every third one hangs; retries are answered normally
    steps: list[int | str] = ["hang:1" if i % 3 == 0 else 201 for i in range(n)]
    hangs = steps.count("hang:1")
    fault_sandbox.sandbox.script(*steps)
    started = time.monotonic()
    deadline = started + size(30, 90)
    with worker_thread(runtime):
        for i in range(n):
            sender.send_ok(i)
        wait_until(all_delivered(runtime, sender, n), deadline, lambda: str(statuses(runtime)))
    log = attempt_log(runtime)
    ambiguous = sum(1 for a in log if a.ambiguous)
    # every request creates a ticket here, the hung ones late: wait for those
    wait_until(lambda: len(fault_sandbox.sandbox.tickets) >= n + ambiguous, deadline, "late tickets")
    settle(fault_sandbox, 0.3, deadline)
    summary = count(scenario, runtime, fault_sandbox, sender, started, hang_steps=hangs)
    fault_report(summary)
    check_nothing_lost_nothing_doubled(summary)
    timeouts = [a for a in log if a.ambiguous]
    assert all(a.http_status is None and "read timeout" in (a.error or "") for a in timeouts), timeouts
    assert summary["ambiguous_attempts"] >= hangs, "each hang is an ambiguous attempt"
    # one ticket per event plus one per timed-out request (SPP created it after we gave up)
    assert summary["duplicates"] == summary["ambiguous_attempts"]
    assert summary["duplicates"] > 0


# --- 5. connection resets ---------------------------------------------------------------------


def test_connection_resets(db_url, fault_app, fault_sandbox, fault_report, request) -> None:
    """SPP reads the request and drops the connection: ambiguous, retried, all delivered."""
    scenario = f"resets-{request.node.callspec.id}"
    n = size(8, 40)
    app = fault_app(db_url)
    runtime = get_runtime(app)
    sender = Sender(app, scenario)
    # the first n requests: every other one is dropped; retries are answered normally
    steps: list[int | str] = ["reset" if i % 2 == 0 else 201 for i in range(n)]
    resets = steps.count("reset")
    fault_sandbox.sandbox.script(*steps)
    started = time.monotonic()
    deadline = started + size(30, 90)
    with worker_thread(runtime):
        for i in range(n):
            sender.send_ok(i)
        wait_until(all_delivered(runtime, sender, n), deadline, lambda: str(statuses(runtime)))
    settle(fault_sandbox, 0.2, deadline)
    summary = count(scenario, runtime, fault_sandbox, sender, started, reset_steps=resets)
    fault_report(summary)
    check_nothing_lost_nothing_doubled(summary)
    lost_connections = [a for a in attempt_log(runtime) if a.ambiguous]
    assert len(lost_connections) == resets, "each reset is one ambiguous attempt"
    assert all("connection to SPP lost" in (a.error or "") for a in lost_connections)
    assert summary["duplicates"] == 0  # the sandbox drops these before creating a ticket


# --- worker processes -------------------------------------------------------------------------


class Workers:
    """``flask --app wsgi bridge worker`` processes in numbered slots, each restartable."""

    def __init__(self, env: dict[str, str], logs: Path, count: int) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_files: list[Path] = []
        self.started = 0
        self._last_log = logs / "worker-0.log"
        for _ in range(count):
            self.procs.append(self._spawn())
            self.log_files.append(self._last_log)

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        self._last_log = self.logs / f"worker-{self.started}.log"
        return start_process(flask_cmd("worker"), self.env, self._last_log)

    def kill_and_restart(self, slot: int) -> int:
        """SIGKILL the worker in ``slot`` and start a new one there; answers the old one's exit code."""
        proc = self.procs[slot]
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(10)
        self.procs[slot] = self._spawn()
        self.log_files[slot] = self._last_log
        return code

    def running(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def ready(self) -> bool:
        return all(f.exists() and "started:" in f.read_text() for f in self.log_files)

    def stop(self, deadline: float) -> list[int | None]:
        """SIGTERM each (after it is up, so that its handler is installed); answers the exit codes."""
        with suppress(AssertionError):
            wait_until(self.ready, max(deadline, time.monotonic() + 30), "workers up before SIGTERM")
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(15))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                codes.append(None)
        return codes

    def lines_with(self, text: str) -> int:
        """Lines containing ``text`` across every worker's log (each incarnation's)."""
        return sum(f.read_text().count(text) for f in self.logs.glob("worker-*.log"))

    def tails(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted(self.logs.glob("worker-*.log")))


def process_env(fault_env: Callable[..., dict[str, str]], db: str, **extra: str) -> dict[str, str]:
    return fault_env(
        db,
        BRIDGE_POLL_SECONDS="0.1",
        BRIDGE_DELIVERY_CONCURRENCY="4",
        BRIDGE_SPP_READ_TIMEOUT_SECONDS="1",
        BRIDGE_LEASE_SECONDS="2",
        BRIDGE_MAX_ATTEMPTS="200",  # see test_spp_down_for_a_while
        LOG_FORMAT="text",
        **extra,
    )


def app_on(env: dict[str, str]) -> Flask:
    from bridge.app import create_app
    from bridge.migrate import upgrade

    app = create_app(env=env)
    upgrade(get_runtime(app).store.engine)
    return app


def post_in_background(
    sender: Sender, n: int, spread_seconds: float, retry_until: float
) -> tuple[threading.Thread, list]:
    """Post events 0..n-1 over ``spread_seconds``; a 503 is sent again (same key) until accepted."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pending = list(range(n))
            pause = spread_seconds / max(1, n)
            while pending and time.monotonic() < retry_until:
                i = pending.pop(0)
                status = sender.send(i)
                if status == 503:
                    pending.append(i)
                    time.sleep(0.1)
                elif status != 200:
                    raise AssertionError(f"event {i}: HTTP {status}")
                time.sleep(pause)
            assert not pending, f"{len(pending)} events never accepted"
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="fault-sender", daemon=True)
    thread.start()
    return thread, errors


# --- 6. workers SIGKILLed again and again -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_sigkilled_again_and_again(pg_url, fault_env, fault_sandbox, fault_report, tmp_path) -> None:
    """Three workers on PostgreSQL; every 0.5-1 s a random one is SIGKILLed and started again."""
    scenario = "sigkill_workers-postgres"
    n = size(100, 500)
    seed = int(os.environ.get("BRIDGE_FAULTS_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    env = process_env(fault_env, pg_url)
    app = app_on(env)
    runtime = get_runtime(app)
    # deliveries take a while, so each worker holds claims and most kills land mid-delivery
    fault_sandbox.sandbox.latency_ms = 250
    sender = Sender(app, scenario)
    started = time.monotonic()
    deadline = started + size(60, 240)
    workers = Workers(env, tmp_path, 3)
    kills, codes = 0, []
    try:
        wait_until(workers.ready, deadline, workers.tails)
        poster, errors = post_in_background(sender, n, size(3, 15), deadline)
        done = all_delivered(runtime, sender, n)
        while time.monotonic() < deadline and (poster.is_alive() or not done()):
            time.sleep(rng.uniform(0.5, 1.0))
            assert workers.kill_and_restart(rng.randrange(3)) == -signal.SIGKILL
            kills += 1
        poster.join(5)
        assert not errors, errors
        wait_until(done, deadline, lambda: f"{statuses(runtime)}\n{workers.tails()}")
    finally:
        codes = workers.stop(deadline)
    settle(fault_sandbox, 0.5, time.monotonic() + 10)
    log = attempt_log(runtime)
    summary = count(
        scenario,
        runtime,
        fault_sandbox,
        sender,
        started,
        workers=3,
        kills=kills,
        seed=seed,
        lease_expired_attempts=sum(1 for a in log if a.error and "lease expired" in a.error),
        exit_codes_on_sigterm=codes,
    )
    fault_report(summary)
    check_nothing_lost_nothing_doubled(summary)
    assert kills >= 3, "too few kills happened during the run"
    assert summary["lease_expired_attempts"] > 0, "no kill landed on a claimed event"
    assert codes == [0, 0, 0], workers.tails()


# --- 7. the database stopped and started under load -------------------------------------------


def pg_cluster(url: str) -> tuple[str, str]:
    """The local cluster (version, name) behind ``url``; skip when it cannot be stopped from here."""
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip(f"TEST_DATABASE_URL is not a local PostgreSQL ({host}): cannot stop it from here")
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        pytest.skip("pg_ctlcluster is not available: cannot stop PostgreSQL from here")
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        pytest.skip("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1], "main"


def pg_ctl(cluster: tuple[str, str], action: str) -> None:
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", cluster[0], cluster[1], action]
    if action == "stop":
        cmd += ["-m", "fast"]
    subprocess.run(cmd, check=True, timeout=60, capture_output=True)


def pg_ready() -> bool:
    result = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], timeout=10, check=False)
    return result.returncode == 0


@pytest.mark.faults_long
@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not LONG, reason="stops PostgreSQL, which disturbs other tests: only with BRIDGE_FAULTS=long")
def test_database_stopped_and_started_under_load(pg_url, fault_env, fault_sandbox, fault_report, tmp_path) -> None:
    """PostgreSQL goes away for a few seconds while events arrive and workers deliver.

    The hook answers 503 while it is down (the sender sends again), the workers keep running and
    resume when it is back; at the end every accepted event is delivered once (or more, only
    where an attempt was ambiguous).
    """
    scenario = "database_restart-postgres"
    cluster = pg_cluster(pg_url)
    n, outage_seconds = size(150, 300), 3.0
    env = process_env(fault_env, pg_url)
    app = app_on(env)
    runtime = get_runtime(app)
    fault_sandbox.sandbox.latency_ms = 20
    sender = Sender(app, scenario)
    started = time.monotonic()
    deadline = started + 180
    workers = Workers(env, tmp_path, 3)
    codes: list[int | None] = []
    alive_during_outage = alive_after_outage = False
    stopped_at = restarted_at = 0.0
    try:
        wait_until(workers.ready, deadline, workers.tails)
        poster, errors = post_in_background(sender, n, 10.0, deadline)
        time.sleep(2.0)  # under load: events arriving and being delivered
        try:
            pg_ctl(cluster, "stop")
            stopped_at = time.monotonic()
            time.sleep(outage_seconds)
            alive_during_outage = workers.running()
        finally:
            pg_ctl(cluster, "start")
            restarted_at = time.monotonic()
            wait_until(pg_ready, time.monotonic() + 60, "PostgreSQL back up")
        poster.join(max(1.0, deadline - time.monotonic()))
        assert not errors, errors
        wait_until(all_delivered(runtime, sender, n), deadline, lambda: f"{statuses(runtime)}\n{workers.tails()}")
        alive_after_outage = workers.running()
    finally:
        if not pg_ready():  # whatever happened above, leave the database running
            with suppress(subprocess.SubprocessError):
                pg_ctl(cluster, "start")
        codes = workers.stop(deadline)
    settle(fault_sandbox, 0.5, time.monotonic() + 10)
    summary = count(
        scenario,
        runtime,
        fault_sandbox,
        sender,
        started,
        workers=3,
        outage_seconds=round(restarted_at - stopped_at, 2),
        workers_alive_during_outage=alive_during_outage,
        workers_alive_after_outage=alive_after_outage,
        worker_restarts=workers.started - 3,
        worker_log_lines_database_unavailable=workers.lines_with("database unavailable"),
        worker_log_lines_listen_lost=workers.lines_with("LISTEN connection lost"),
        exit_codes_on_sigterm=codes,
    )
    fault_report(summary)
    check_nothing_lost_nothing_doubled(summary)
    assert summary["inbound_answers"].get(503, 0) > 0, "no request met the stopped database"
    assert set(summary["inbound_answers"]) <= {200, 503}, summary["inbound_answers"]
    assert alive_during_outage and alive_after_outage, workers.tails()
    assert summary["worker_restarts"] == 0
    assert summary["worker_log_lines_database_unavailable"] > 0, "the workers never noticed the outage"
    assert codes == [0, 0, 0], workers.tails()
