"""Benchmark: accept rate, latency, drain rate and memory, each beside its floor (``make bench``).

Starts everything it needs: SPP sandboxes (0, 50 and 5000 ms latency), the bridge under gunicorn
with the Procfile's settings (gunicorn.conf.py) on SQLite and, when it answers, on PostgreSQL (a
schema of its own, dropped at the end), a bare Flask endpoint under the same gunicorn settings
(the floor), and delivery workers when a scenario needs them. Load comes from a separate
process: wrk with bench/unique.lua when installed, else bench/loadgen.py. Prints one table and
writes bench/results/bench-<timestamp>.json. Loopback only, bounded in time, and everything it
started is stopped at the end, also on Ctrl-C or an error.

Scenarios:
  1. POST /hooks/<json source>, unique bodies, at 16 and 64 connections: bare, SQLite, PostgreSQL
  2. the same with a signed Mailgun multipart post of ~20 kB (a new Message-Id and token each time);
     2b. that body parsed by Werkzeug's multipart parser (the bridge's), python-multipart and
     streaming-form-data in the bench's own process (bench/multipart_parsers.py)
  3. accept rate with a worker delivering to a 5000 ms sandbox vs a 0 ms one
  4. drain of N queued events at 0 and 50 ms, BRIDGE_DELIVERY_CONCURRENCY 4 and 16, 1 and 2 workers;
     a delivery is two calls (ticket, then its message), so vs concurrency x processes / (2 x latency)
     and vs a bare requests.Session loop making the same two calls; every delivered event must
     have left exactly one ticket with one message in the sandbox
  5. resident memory of every web and worker process after the runs
  6. pipeline: intake at 16 and 64 connections while one worker process delivers to a 0 ms and a
     50 ms sandbox, on SQLite (the web processes and the worker share the file) and PostgreSQL:
     intake rate, p50/p99, deliveries per second in the load window (delivered_at inside it),
     the backlog when the load stops and the time to drain it, beside the floor of the same
     database: a bare Flask endpoint that validates the JSON with marshmallow and inserts one row
     (bench/bare_app.py, ``POST /insert/<database>``), under the same gunicorn settings

Every accept figure (scenarios 1, 2, 3 and 6, floors included) is the median of ``--runs``
interleaved runs (3; 1 with --quick), with the spread (min-max) beside it. ``--only`` runs some
scenarios alone (e.g. ``--only pipeline``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multipart_parsers
from loadgen import part
from stack import (
    BIN,
    DEFAULT_PG,
    FLASK,
    ROOT,
    children,
    drop_schema,
    free_port,
    pg_schema,
    rss_mb,
    spawn,
    stop,
    wait_http,
)

BENCH = ROOT / "bench"
JSON_TOKEN = "bench-json-token"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"  # the test signing key of tests/providers/test_mailgun.py
SPP_TOKEN, ADMIN = "bench-spp-token", "bench-admin-token"
# the senders are named (@example.com: every generated body), so a delivery is exactly two calls
# to SPP, ticket and message, with no client look-up before them
SOURCES = f"""defaults: {{user_id: 1}}
clients:
  "@bigcustomer.com": 30
  "@example.com": 1
sources:
  bench: {{kind: json, secret: {JSON_TOKEN}}}
  mail: {{kind: mailgun, secret: {MAILGUN_KEY}}}
"""
SLOW_MS, DRAIN_MS = 5000, 50
PIPELINE_MS = (0, 50)  # sandbox latencies of the pipeline scenario
PENDING = "status IN ('queued', 'retrying', 'delivering')"
SCENARIOS = ("accept", "slow", "drain", "pipeline")
# environment that would change the Procfile's settings; the children get the defaults
STRIPPED_ENV = ("DATABASE_URL", "WEB_CONCURRENCY", "GUNICORN_THREADS", "PORT", "PROMETHEUS_MULTIPROC_DIR")

TARGETS = {
    "accept_sqlite": 0.30,
    "accept_postgresql": 0.20,
    "p99_ms_16": 25.0,
    "slow_vs_fast": 0.9,
    "drain_50ms_vs_ideal": 0.9,
    "drain_0ms_vs_bare": 0.5,
    "rss_mb": 80.0,
    "pipeline_vs_bare_insert": 0.6,
    "pipeline_deliveries_vs_intake_0ms": 0.9,
}


class Interrupted(Exception):
    pass


def on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- request bodies ---------------------------------------------------------------------------


def mailgun_parts(size: int = 20_000) -> tuple[str, bytes, bytes]:
    """(boundary, static fields, attachments + end) of a Mailgun forward() post of about ``size`` bytes.

    The fixture tests/fixtures/mailgun/attachments.json with a longer reply thread and its HTML;
    timestamp, token, signature and Message-Id go between the two parts, per request.
    """
    fixtures = ROOT / "tests" / "fixtures" / "mailgun"
    fields = json.loads((fixtures / "attachments.json").read_text())
    fields.pop("Message-Id", None)
    paragraph = (
        "> On Wed, 6 Nov 2024 at 09:12, Support <support@help.example.com> wrote:\n"
        "> Thanks for the report. Could you send the exported file, a screenshot of the error and the\n"
        "> invoice the report was built from? We will look into it as soon as we have them.\n>\n"
    )
    boundary = "----BenchBoundary" + secrets.token_hex(8)

    def file_part(name: str, filename: str, ctype: str, data: bytes) -> bytes:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        return head.encode() + f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"

    suffix = (
        file_part("attachment-1", "invoice.pdf", "application/pdf", (fixtures / "invoice.pdf").read_bytes())
        + file_part("attachment-2", "screenshot.png", "image/png", (fixtures / "screenshot.png").read_bytes())
        + f"--{boundary}--\r\n".encode()
    )
    dynamic = 4 * 130  # the four per-request fields
    plain, repeats = fields["body-plain"], 0
    prefix = b""
    while len(prefix) + len(suffix) + dynamic < size and repeats < 1000:
        repeats += 1
        quoted = paragraph * repeats
        fields["body-plain"] = plain + "\n" + quoted
        fields["body-html"] = "<html><body><p>" + quoted.replace("\n", "<br>\n") + "</p></body></html>"
        prefix = b"".join(part(boundary, k, str(v)) for k, v in fields.items())
    return boundary, prefix, suffix


def write_tokens(path: Path, count: int) -> None:
    """``count`` lines ``timestamp token signature``, signed as Mailgun does (HMAC-SHA256 of timestamp+token)."""
    stamp = str(int(time.time()))
    key = MAILGUN_KEY.encode()
    lines = []
    for _ in range(count):
        token = secrets.token_hex(25)
        lines.append(f"{stamp} {token} {hmac.new(key, (stamp + token).encode(), hashlib.sha256).hexdigest()}")
    path.write_text("\n".join(lines) + "\n")


# --- load -------------------------------------------------------------------------------------


@dataclass
class Load:
    tool: str  # "wrk" or "python"
    data: Path
    pool: int  # signed Mailgun tokens per run

    def run(self, url: str, mode: str, connections: int, duration: float) -> dict[str, Any]:
        run_id = secrets.token_hex(4)
        if mode == "mailgun":
            write_tokens(self.data / "tokens.txt", self.pool)
        if self.tool == "wrk":
            threads = min(2, connections)
            args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s"]
            args += ["-s", str(BENCH / "unique.lua"), url, "--", mode, str(self.data), run_id, str(threads)]
        else:
            args = [sys.executable, str(BENCH / "loadgen.py"), url, "--connections", str(connections)]
            args += ["--duration", f"{duration:g}", "--mode", mode, "--data", str(self.data), "--run-id", run_id]
        launched = time.time()
        done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, start_new_session=True)
        finished = time.time()
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        if self.tool == "wrk":
            line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
            if line is None:
                raise RuntimeError(f"wrk printed no result: {done.stdout[-500:]} {done.stderr[-500:]}")
            result = json.loads(line[len("BENCH_JSON ") :])
            bad = result["non_2xx_3xx"]
            errors = result["connect_errors"] + result["read_errors"] + result["write_errors"] + result["timeouts"]
            result["statuses"] = {"2xx/3xx": result["requests"] - bad, "other": bad, "socket errors": errors}
            result["ok_per_s"] = round((result["requests"] - bad) / result["duration_s"], 1)
        else:
            result = json.loads(done.stdout)
        # wrk reports no start time: its window is taken to end when it exits
        result.setdefault("started_epoch", max(launched, finished - duration))
        result.setdefault("load_s", duration)
        result.update(tool=self.tool, connections=connections, mode=mode)
        return result


# --- processes and databases ------------------------------------------------------------------


class Db:
    """Direct access to a bridge database for counts, timing and clearing between runs."""

    def __init__(self, kind: str, url: str, schema: str | None = None, path: Path | None = None) -> None:
        self.kind, self.url, self.schema, self.path = kind, url, schema, path

    @contextlib.contextmanager
    def conn(self) -> Iterator[Any]:
        if self.kind == "sqlite":
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            try:
                yield conn
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(self.url, autocommit=True, options=f"-csearch_path={self.schema}") as conn:
                yield conn

    def one(self, sql: str, *params: Any) -> Any:
        with self.conn() as conn:
            row = conn.execute(sql.replace("?", "%s") if self.kind != "sqlite" else sql, params).fetchone()
            return row[0] if row else None

    def count(self, where: str = "1=1", *params: Any) -> int:
        return int(self.one(f"SELECT count(*) FROM events WHERE {where}", *params))

    def clear(self) -> None:
        with self.conn() as conn:
            for table in ("attempts", "seen_tokens", "events"):
                conn.execute(f"DELETE FROM {table}")
            with contextlib.suppress(Exception):  # the bare insert floor's table, once it exists
                conn.execute("DELETE FROM bench_bare_events")
            if self.kind == "sqlite":
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def as_time(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    sandboxes: dict[int, int] = field(default_factory=dict)  # latency ms -> port
    sandbox_procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    webs: dict[str, tuple[subprocess.Popen[bytes], int, Db, dict[str, str]]] = field(default_factory=dict)
    bare: tuple[subprocess.Popen[bytes], int] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV and not k.startswith(("BRIDGE_", "SPP_"))}
        sources = self.work / "sources.yml"
        sources.write_text(SOURCES)
        env.update(
            BRIDGE_SOURCES_FILE=str(sources),
            BRIDGE_ADMIN_TOKEN=ADMIN,
            SPP_API_TOKEN=SPP_TOKEN,
            SPP_API_URL=f"http://127.0.0.1:{self.sandboxes[0]}",
        )
        return env

    def start_sandboxes(self, latencies: list[int]) -> None:
        # the flask CLI loads the app, so the sandbox needs the bridge's configuration too
        self.sandboxes = {latency: free_port() for latency in latencies}
        self.env = self.base_env()
        for latency, port in self.sandboxes.items():
            args = [
                *FLASK,
                "sandbox",
                "--port",
                str(port),
                "--token",
                SPP_TOKEN,
                "--latency-ms",
                str(latency),
                "--quiet",
            ]
            proc = spawn(f"sandbox-{latency}ms", args, self.env, self.work)
            self.procs.append(proc)
            self.sandbox_procs[latency] = proc
        for latency, port in self.sandboxes.items():
            wait_http(f"http://127.0.0.1:{port}/", self.sandbox_procs[latency], timeout=30)

    def base_env_raw(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV and not k.startswith(("BRIDGE_", "SPP_"))}

    def start_web(self, name: str, db: Db, db_url: str) -> None:
        env = {**self.env, "DATABASE_URL": db_url}
        migrated = subprocess.run([*FLASK, "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        if migrated.returncode != 0:
            raise RuntimeError(f"migrate ({name}) failed: {migrated.stderr.strip()[-500:]}")
        port = free_port()
        metrics = self.work / f"metrics-{name}"
        metrics.mkdir()
        web_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        args = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app"]
        proc = spawn(f"web-{name}", args, web_env, self.work)
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=60)
        self.webs[name] = (proc, port, db, env)

    def start_bare(self) -> None:
        port = free_port()
        env = {**self.base_env_raw(), "BENCH_BARE_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(self.work)}
        for name, (_, _, _, web_env) in self.webs.items():  # the insert floor writes to the bridge's databases
            env[f"BENCH_BARE_DB_{name.upper()}"] = web_env["DATABASE_URL"]
        args = [
            str(BIN / "gunicorn"),
            "--config",
            str(BENCH / "gunicorn_bare.py"),
            "--chdir",
            str(BENCH),
            "bare_app:app",
        ]
        proc = spawn("web-bare", args, env, self.work)
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=30)
        self.bare = (proc, port)

    def start_workers(
        self, name: str, count: int, concurrency: int | None, latency: int, tag: str
    ) -> list[subprocess.Popen[bytes]]:
        """``concurrency`` None: the worker's default BRIDGE_DELIVERY_CONCURRENCY."""
        _, _, _, env = self.webs[name]
        env = dict(env)
        if concurrency is not None:
            env["BRIDGE_DELIVERY_CONCURRENCY"] = str(concurrency)
        env["SPP_API_URL"] = f"http://127.0.0.1:{self.sandboxes[latency]}"
        workers = []
        for n in range(count):
            logfile = self.work / f"worker-{tag}-{n}.log"
            proc = spawn(logfile.stem, [*FLASK, "worker"], env, self.work)
            self.procs.append(proc)
            workers.append(proc)
        deadline = time.monotonic() + 30
        for n, proc in enumerate(workers):
            logfile = self.work / f"worker-{tag}-{n}.log"
            while "started:" not in logfile.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {tag}-{n} did not start; see {logfile}")
                time.sleep(0.1)
        return workers

    def stop_all(self) -> None:
        stop(list(reversed(self.procs)))
        self.procs.clear()


def fill(url: str, count: int, threads: int = 16) -> int:
    """Post ``count`` unique JSON events; the number answered 200."""
    run_id = secrets.token_hex(4)
    local = threading.local()

    def one(n: int) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body = {"email": f"drain{n}@example.com", "subject": f"Drain {run_id} {n}", "message": f"queued {n}"}
        try:
            return session.post(url, json=body, headers={"X-Bridge-Token": JSON_TOKEN}, timeout=30).status_code
        except requests.RequestException:
            return 0

    with ThreadPoolExecutor(threads) as pool:
        return sum(1 for code in pool.map(one, range(count)) if code == 200)


def memory_of(pid: int) -> float:
    return round(rss_mb(pid), 1)


def spp_counts(url: str) -> dict[str, Any]:
    """What a sandbox holds (``GET /_sandbox/state``): tickets, messages, tickets with exactly one
    message, and the requests it saw per endpoint."""
    state = requests.get(f"{url}/_sandbox/state", timeout=60).json()
    tickets = state["tickets"]
    return {
        "tickets": len(tickets),
        "messages": sum(len(ticket["messages"]) for ticket in tickets),
        "tickets_with_one_message": sum(1 for ticket in tickets if len(ticket["messages"]) == 1),
        "requests": state["requests_seen"],
    }


def two_calls_each(counts: dict[str, Any], deliveries: int) -> bool:
    """Whether ``deliveries`` deliveries were exactly one ticket and one message each, with
    nothing else sent (no client look-up, no retry)."""
    requests_seen = counts["requests"]
    return (
        counts["tickets"] == counts["messages"] == counts["tickets_with_one_message"] == deliveries
        and requests_seen["tickets"] == requests_seen["messages"] == deliveries
        and requests_seen["clients"] == requests_seen["create_client"] == 0
    )


# --- scenarios --------------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from interleaved runs of the same case: the median of each number, with the
    spread (min-max) of the rate and the p99, and every run kept under ``runs``."""
    out = dict(runs[-1])
    out["runs"] = runs
    out["n_runs"] = len(runs)
    for key in ("ok_per_s", "p50_ms", "p99_ms", "deliveries_per_s", "backlog", "drain_s", "stored"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 3)
            out[f"{key}_spread"] = [min(values), max(values)]
    return out


def spread(r: dict[str, Any], key: str, fmt: str = "{:.0f}", unit: str = "") -> str:
    """``median<unit> (min-max)`` when there was more than one run, else the one figure."""
    value = fmt.format(r[key]) + unit
    lo_hi = r.get(f"{key}_spread")
    if r.get("n_runs", 1) > 1 and lo_hi:
        value += f" ({fmt.format(lo_hi[0])}-{fmt.format(lo_hi[1])})"
    return value


def accept_runs(
    b: Bench, load: Load, dbs: list[str], conns: list[int], duration: float, warmup: float, rounds: int
) -> list[dict[str, Any]]:
    """Scenarios 1 and 2: each (body, connections) on the bare endpoint, then on each database,
    ``rounds`` times over, interleaved; each figure is the median of its runs.

    Each target gets an unrecorded ``warmup`` run per body first, so that no side pays for
    first requests (imports, pools, caches) in its figures.
    """
    assert b.bare is not None
    raw: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for n in range(rounds):
        for mode, source in (("json", "bench"), ("mailgun", "mail")):
            for c in conns:
                for target in ["bare", *dbs]:
                    if target == "bare":
                        url, db = f"http://127.0.0.1:{b.bare[1]}/hooks/{source}", None
                    else:
                        _, port, db, _ = b.webs[target]
                        url = f"http://127.0.0.1:{port}/hooks/{source}"
                    if n == 0 and c == conns[0] and warmup > 0:
                        load.run(url, mode, c, warmup)
                    unusable = "source = ? AND status IN ('failed', 'discarded')"
                    before = (db.count("source = ?", source), db.count(unusable, source)) if db else (0, 0)
                    result = load.run(url, mode, c, duration)
                    if db:
                        time.sleep(0.2)
                        # stored may exceed wrk's count: requests in flight when it stopped are stored too
                        result["stored"] = db.count("source = ?", source) - before[0]
                        result["stored_failed_or_discarded"] = db.count(unusable, source) - before[1]
                    result.update(scenario="accept", target=target, body=mode, round=n + 1)
                    log(
                        f"accept {mode:7} c={c:<3} {target:10} {result['ok_per_s']:8.1f}/s "
                        f"p50 {result['p50_ms']:.1f} p99 {result['p99_ms']:.1f} ms {result['statuses']} "
                        f"stored {result.get('stored', '-')} "
                        f"(failed/discarded {result.get('stored_failed_or_discarded', '-')}) [round {n + 1}]"
                    )
                    raw.setdefault((mode, c, target), []).append(result)
                    time.sleep(0.5)
    return [median_of(runs) for runs in raw.values()]


def slow_runs(
    b: Bench, load: Load, dbs: list[str], duration: float, rounds: int
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Scenario 3: accept rate at 16 connections with a worker delivering to a fast, then a slow
    SPP, ``rounds`` times over, interleaved; each figure is the median of its runs."""
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
    memory = {}
    for n in range(rounds):
        for name in dbs:
            _, port, db, _ = b.webs[name]
            for latency in (0, SLOW_MS):
                db.clear()
                workers = b.start_workers(name, 1, 4, latency, f"s3-{name}-{latency}ms-r{n + 1}")
                try:
                    time.sleep(0.5)
                    result = load.run(f"http://127.0.0.1:{port}/hooks/bench", "json", 16, duration)
                    result.update(
                        scenario="spp_latency",
                        target=name,
                        spp_latency_ms=latency,
                        round=n + 1,
                        delivered_during=db.count("status = 'delivered'"),
                        stored=db.count(),
                    )
                    memory[f"delivery worker (scenario 3, {name}, SPP {latency} ms)"] = memory_of(workers[0].pid)
                finally:
                    stop(workers, timeout=15)
                    b.procs[:] = [p for p in b.procs if p not in workers]
                log(
                    f"SPP {latency:>4} ms {name:10} accept {result['ok_per_s']:8.1f}/s p99 {result['p99_ms']:.1f} ms, "
                    f"delivered meanwhile {result['delivered_during']} of {result['stored']} [round {n + 1}]"
                )
                raw.setdefault((name, latency), []).append(result)
    return [median_of(runs) for runs in raw.values()], memory


def delivered_between(db: Db, start: float, end: float) -> int:
    """Events whose delivery was recorded inside the wall-clock window [start, end)."""
    with db.conn() as conn:
        stamps = conn.execute("SELECT delivered_at FROM events WHERE status = 'delivered'").fetchall()
    low, high = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    return sum(1 for (stamp,) in stamps if stamp is not None and low <= as_time(stamp) < high)


def pipeline_once(
    b: Bench, load: Load, name: str, latency: int, c: int, duration: float, drain_limit: float, tag: str
) -> tuple[dict[str, Any], float]:
    """One pipeline run: a fresh worker (the default BRIDGE_DELIVERY_CONCURRENCY) on an empty
    queue, ``duration`` seconds of intake at ``c`` connections, then the drain of what is left,
    waited for up to ``drain_limit`` seconds (less when, after 3 s, the rate so far cannot make
    it: the drain time is then an estimate at that rate). Returns the result and the worker's
    memory."""
    _, port, db, _ = b.webs[name]
    db.clear()
    spp = f"http://127.0.0.1:{b.sandboxes[latency]}"
    requests.post(f"{spp}/_sandbox/reset", timeout=10)
    workers = b.start_workers(name, 1, None, latency, tag)
    try:
        time.sleep(0.5)
        result = load.run(f"http://127.0.0.1:{port}/hooks/bench", "json", c, duration)
        stopped = time.monotonic()
        backlog = db.count(PENDING)
        start = float(result["started_epoch"])
        during = delivered_between(db, start, start + float(result["load_s"]))
        drained_at = None
        while (waited := time.monotonic() - stopped) < drain_limit:
            pending = db.count(PENDING)
            if pending == 0:
                drained_at = time.monotonic()
                break
            # after 3 s, stop waiting when the rate so far cannot drain the rest within the limit
            rate = (backlog - pending) / waited if waited > 0 else 0.0
            if waited >= 3 and (rate <= 0 or pending / rate > 1.5 * (drain_limit - waited)):
                break
            time.sleep(0.1)
        left = db.count(PENDING)
        waited = (drained_at or time.monotonic()) - stopped
        rss = memory_of(workers[0].pid)
    finally:
        stop(workers, timeout=15)
        b.procs[:] = [p for p in b.procs if p not in workers]
    drain_rate = (backlog - left) / waited if waited > 0 else 0.0
    result.update(
        scenario="pipeline",
        target=name,
        spp_latency_ms=latency,
        stored=db.count(),
        delivered_during=during,
        deliveries_per_s=round(during / float(result["load_s"]), 1),
        backlog=backlog,
        drained=left == 0,
        drain_limit_s=drain_limit,
        waited_s=round(waited, 2),
        left_after_wait=left,
        drain_s=round(waited, 2) if left == 0 else None,
        drain_rate_per_s=round(drain_rate, 1),
        # not drained within the limit: the time at the rate seen while waiting (an estimate)
        drain_s_estimate=round(backlog / drain_rate, 1) if left and drain_rate else None,
        failed=db.count("status IN ('failed', 'discarded')"),
    )
    return result, rss


def pipeline_runs(
    b: Bench,
    load: Load,
    dbs: list[str],
    conns: list[int],
    duration: float,
    drain_limit: float,
    rounds: int,
    warmup: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """Scenario 6: per database and connections, the bare insert floor, then intake with a worker
    delivering to a 0 ms and a 50 ms sandbox; ``rounds`` interleaved rounds, medians."""
    assert b.bare is not None
    floors: dict[tuple[str, int], list[dict[str, Any]]] = {}
    runs: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    memory: dict[str, float] = {}
    for name in dbs:  # warm both sides up; the first insert also creates the floor's table
        floor_url = f"http://127.0.0.1:{b.bare[1]}/insert/{name}"
        body = {"email": "warm@example.com", "subject": "warm-up", "message": "warm-up"}
        answer = requests.post(floor_url, json=body, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"bare insert floor ({name}) answered {answer.status_code}: {answer.text[:300]}")
        if warmup > 0:
            load.run(floor_url, "json", conns[0], warmup)
            load.run(f"http://127.0.0.1:{b.webs[name][1]}/hooks/bench", "json", conns[0], warmup)
    for n in range(rounds):
        for name in dbs:
            _, _, db, _ = b.webs[name]
            for c in conns:
                db.clear()
                floor = load.run(f"http://127.0.0.1:{b.bare[1]}/insert/{name}", "json", c, duration)
                floor.update(scenario="bare_insert", target=name, round=n + 1)
                log(
                    f"bare insert {name:10} c={c:<3} {floor['ok_per_s']:8.1f}/s p50 {floor['p50_ms']:.1f} "
                    f"p99 {floor['p99_ms']:.1f} ms {floor['statuses']} [round {n + 1}]"
                )
                floors.setdefault((name, c), []).append(floor)
                for latency in PIPELINE_MS:
                    tag = f"s6-{name}-{latency}ms-c{c}-r{n + 1}"
                    result, rss = pipeline_once(b, load, name, latency, c, duration, drain_limit, tag)
                    result["round"] = n + 1
                    memory[f"delivery worker (scenario 6, {name}, SPP {latency} ms)"] = rss
                    drain = (
                        f"drained in {result['drain_s']:.1f} s"
                        if result["drained"]
                        else f"{result['left_after_wait']} left after {result['waited_s']:.1f} s "
                        f"(about {result['drain_s_estimate']} s at {result['drain_rate_per_s']}/s)"
                    )
                    log(
                        f"pipeline {name:10} SPP {latency:>2} ms c={c:<3} intake {result['ok_per_s']:8.1f}/s "
                        f"p50 {result['p50_ms']:.1f} p99 {result['p99_ms']:.1f} ms {result['statuses']}, "
                        f"delivered {result['delivered_during']} in the window = {result['deliveries_per_s']}/s, "
                        f"backlog {result['backlog']}, {drain}, failed {result['failed']} [round {n + 1}]"
                    )
                    runs.setdefault((name, latency, c), []).append(result)
    return [median_of(r) for r in floors.values()], [median_of(r) for r in runs.values()], memory


def drain_runs(
    b: Bench, name: str, events: int, configs: list[tuple[int, int, int]]
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Scenario 4: ``events`` queued through the app with no worker, then drained by fresh workers."""
    _, port, db, _ = b.webs[name]
    results, memory = [], {}
    for latency, concurrency, processes in configs:
        db.clear()
        spp = f"http://127.0.0.1:{b.sandboxes[latency]}"
        requests.post(f"{spp}/_sandbox/reset", timeout=10)
        accepted = fill(f"http://127.0.0.1:{port}/hooks/bench", events)
        queued = db.count("status = 'queued'")
        tag = f"s4-{latency}ms-c{concurrency}-p{processes}"
        started = time.monotonic()
        workers = b.start_workers(name, processes, concurrency, latency, tag)
        try:
            # each delivery waits for two answers: its ticket, then its message
            ideal = concurrency * processes / (2 * latency / 1000) if latency else None
            limit = 30 + (3 * queued / ideal if ideal else 90)
            deadline = time.monotonic() + limit
            while (done := db.count("status IN ('delivered', 'failed')")) < queued and time.monotonic() < deadline:
                time.sleep(0.1)
            wall = time.monotonic() - started
            worker_rss = [memory_of(p.pid) for p in workers]
        finally:
            stop(workers, timeout=15)
            b.procs[:] = [p for p in b.procs if p not in workers]
        delivered = db.count("status = 'delivered'")
        counts = spp_counts(spp)
        first = db.one("SELECT min(started_at) FROM attempts")
        last = db.one("SELECT max(delivered_at) FROM events WHERE status = 'delivered'")
        span = (as_time(last) - as_time(first)).total_seconds() if first and last else None
        rate = round(delivered / span, 1) if span else 0.0
        result = {
            "scenario": "drain",
            "target": name,
            "spp_latency_ms": latency,
            "concurrency": concurrency,
            "processes": processes,
            "accepted": accepted,
            "queued": queued,
            "delivered": delivered,
            "finished_in_time": done >= queued,
            "spp": counts,
            # every queued event delivered as one ticket + one message, and nothing more sent
            "ticket_and_message_each": delivered == queued and two_calls_each(counts, delivered),
            "attempts": db.one("SELECT count(*) FROM attempts"),
            "span_s": round(span, 3) if span else None,
            "wall_s_with_worker_start": round(wall, 2),
            "per_s": rate,
            "ideal_per_s": round(ideal, 1) if ideal else None,
            "worker_rss_mb": worker_rss,
        }
        for n, rss in enumerate(worker_rss, 1):
            memory[f"delivery worker {n} (scenario 4, {latency} ms, c{concurrency}, {processes} proc)"] = rss
        log(
            f"drain {latency:>2} ms c={concurrency:<2} x{processes}: {delivered}/{queued} in {span or 0:.2f} s = "
            f"{rate:.1f}/s (ideal {result['ideal_per_s']}), SPP {counts['tickets']} tickets "
            f"{counts['messages']} messages, requests {counts['requests']}, workers {worker_rss} MB"
        )
        results.append(result)
    return results, memory


def bare_loops(b: Bench, runs: list[tuple[int, int]], count: int) -> dict[str, dict[str, Any]]:
    """The drain floor: requests.Session in ``c`` threads, in a process of its own, per (latency, c).

    A delivery is a ticket and its message, as the bridge's. At 0 ms it makes ``count``
    deliveries; at a latency, about three seconds' worth at c / (2 x latency).
    """
    out = {}
    for latency, c in runs:
        url = f"http://127.0.0.1:{b.sandboxes[latency]}"
        requests.post(f"{url}/_sandbox/reset", timeout=10)
        n = count if not latency else min(count, max(100, int(3 * c * 1000 / (2 * latency))))
        args = [sys.executable, str(BENCH / "bare_client.py"), url, "--token", SPP_TOKEN]
        args += ["--threads", str(c), "--count", str(n)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300, start_new_session=True)
        if done.returncode != 0:
            raise RuntimeError(f"bare_client failed: {done.stderr[-500:]}")
        loop = json.loads(done.stdout)
        counts = spp_counts(url)
        loop.update(count=n, spp=counts, ticket_and_message_each=loop["deliveries"] == n and two_calls_each(counts, n))
        out[f"{latency}ms-c{c}"] = loop
        log(
            f"bare requests loop {latency:>2} ms c={c:<2}: {loop['per_s']} deliveries/s, {loop['deliveries']}/{n} "
            f"(SPP {counts['tickets']} tickets {counts['messages']} messages)"
        )
        requests.post(f"{url}/_sandbox/reset", timeout=10)
    return out


# --- report -----------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def build_rows(report: dict[str, Any], dbs: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    accept = report["accept"]
    bare = {(r["body"], r["connections"]): r for r in accept if r["target"] == "bare"}
    for r in accept:
        if r["target"] == "bare":
            continue
        floor = bare[(r["body"], r["connections"])]
        ratio = r["ok_per_s"] / floor["ok_per_s"] if floor["ok_per_s"] else 0.0
        target = TARGETS[f"accept_{r['target']}"]
        unique = (
            "" if r["body"] == "json" else (" (unique Message-Id)" if not r.get("pool_wraps") else " (pool wrapped)")
        )
        stored = f", {r['stored']} stored" if "stored" in r else ""
        rows.append(
            [
                f"1/2 accept {r['body']}{unique}",
                f"{r['target']} c{r['connections']}",
                f"{spread(r, 'ok_per_s', unit='/s')}{stored}",
                f"{r['p50_ms']:.1f} / {spread(r, 'p99_ms', '{:.1f}')}",
                f"bare {spread(floor, 'ok_per_s', unit='/s')}, p99 {floor['p99_ms']:.1f}",
                f"{ratio:.2f}",
                f">= {target:.2f}",
                verdict(ratio >= target),
            ]
        )
        r["ratio_vs_bare"] = round(ratio, 3)
        if r["connections"] == 16:
            rows.append(
                [
                    f"1/2 p99 {r['body']}",
                    f"{r['target']} c16",
                    f"{spread(r, 'p99_ms', '{:.1f}', ' ms')}",
                    "",
                    f"bare {floor['p99_ms']:.1f} ms",
                    "",
                    f"< {TARGETS['p99_ms_16']:.0f} ms",
                    verdict(r["p99_ms"] < TARGETS["p99_ms_16"]),
                ]
            )
    for name in dbs:
        pair = {r["spp_latency_ms"]: r for r in report["spp_latency"] if r["target"] == name}
        if len(pair) == 2:
            fast, slow = pair[0], pair[SLOW_MS]
            ratio = slow["ok_per_s"] / fast["ok_per_s"] if fast["ok_per_s"] else 0.0
            rows.append(
                [
                    "3 accept, SPP 5 s slow",
                    f"{name} c16, 1 worker",
                    f"{spread(slow, 'ok_per_s', unit='/s')}",
                    f"{slow['p50_ms']:.1f} / {slow['p99_ms']:.1f}",
                    f"SPP 0 ms {spread(fast, 'ok_per_s', unit='/s')}, p99 {fast['p99_ms']:.1f}",
                    f"{ratio:.2f}",
                    f">= {TARGETS['slow_vs_fast']:.2f}",
                    verdict(ratio >= TARGETS["slow_vs_fast"]),
                ]
            )
    rows.extend(parser_rows(report.get("multipart_parsers")))
    loops = report.get("bare_loop", {})
    for r in report["drain"]:
        label = f"{r['target']} c{r['concurrency']} x{r['processes']} proc"
        spp = r["spp"]
        sent = f"{spp['tickets']} tickets + {spp['messages']} msgs"
        measured = f"{r['per_s']:.0f}/s ({r['delivered']}/{r['queued']}: {sent})"
        threads = r["concurrency"] * r["processes"]
        if r["spp_latency_ms"]:
            floor, ratio, target = r["ideal_per_s"], r["per_s"] / r["ideal_per_s"], TARGETS["drain_50ms_vs_ideal"]
            loop = loops.get(f"{r['spp_latency_ms']}ms-c{threads}")
            floor_text = f"ideal {floor:.0f}/s" + (f" (bare loop {loop['per_s']:.0f}/s)" if loop else "")
        else:
            loop = loops.get(f"0ms-c{threads}")
            floor = loop["per_s"] if loop else 0.0
            ratio = r["per_s"] / floor if floor else 0.0
            target = TARGETS["drain_0ms_vs_bare"]
            floor_text = f"bare loop {floor:.0f}/s ({threads} threads)"
        if loop and not loop["ticket_and_message_each"]:
            floor_text += " (bare loop incomplete)"
        ok = ratio >= target and r["finished_in_time"] and r["ticket_and_message_each"]
        r["ratio"] = round(ratio, 3)
        rows.append(
            [
                f"4 drain, SPP {r['spp_latency_ms']} ms",
                label,
                measured,
                "",
                floor_text,
                f"{ratio:.2f}",
                f">= {target:.2f}",
                verdict(ok),
            ]
        )
    rows.extend(pipeline_rows(report))
    for name, mb in report["memory_mb"].items():
        bridge = name.startswith(("web sqlite", "web postgresql", "delivery worker"))
        rows.append(
            [
                "5 VmRSS",
                name,
                f"{mb:.1f} MB",
                "",
                "",
                "",
                f"<= {TARGETS['rss_mb']:.0f} MB" if bridge else "(info)",
                verdict(mb <= TARGETS["rss_mb"]) if bridge else "-",
            ]
        )
    return rows


def parser_rows(parsers: dict[str, Any] | None) -> list[list[str]]:
    """Scenario 2b: the Mailgun body through each multipart parser, beside Werkzeug's (the bridge's)."""
    if not parsers:
        return []
    times, spreads = parsers["us_per_body"], parsers["spread_us"]
    rows = []
    for name in multipart_parsers.PARSERS:
        low, high = spreads[name]
        rows.append(
            [
                "2b parse Mailgun body",
                f"{name} ({parsers['parts_found'][name]} parts)",
                f"{times[name]:.0f} us ({low:.0f}-{high:.0f})",
                "",
                f"werkzeug {times['werkzeug']:.0f} us",
                f"{times[name] / times['werkzeug']:.2f}",
                "(info)",
                "-",
            ]
        )
    return rows


def drain_text(r: dict[str, Any]) -> str:
    """How long the backlog took to drain: the median when every run drained within the limit,
    else how many runs did not and the median estimate at the rate seen while waiting."""
    runs = r.get("runs", [r])
    missed = [x for x in runs if not x["drained"]]
    if not missed:
        return f"drained in {spread(r, 'drain_s', '{:.1f}', ' s')}"
    estimates = sorted(x["drain_s_estimate"] for x in missed if x["drain_s_estimate"])
    rates = sorted(x["drain_rate_per_s"] for x in missed)
    about = (
        f"about {estimates[len(estimates) // 2]:.0f} s at {rates[len(rates) // 2]:.0f}/s (est.)" if estimates else "?"
    )
    which = f" in {len(missed)}/{len(runs)} runs" if len(runs) > 1 else ""
    return f"not drained within {r['drain_limit_s']:g} s{which}: {about}"


def pipeline_rows(report: dict[str, Any]) -> list[list[str]]:
    """Scenario 6: intake vs the bare insert floor of the same database; deliveries in the load
    window vs intake at 0 ms; p99 at 16 connections; backlog and drain (information)."""
    rows: list[list[str]] = []
    floors = {(r["target"], r["connections"]): r for r in report.get("bare_insert", [])}
    for r in report.get("pipeline", []):
        floor = floors.get((r["target"], r["connections"]))
        if floor is None:
            continue
        case = f"{r['target']} c{r['connections']}, SPP {r['spp_latency_ms']} ms"
        ratio = r["ok_per_s"] / floor["ok_per_s"] if floor["ok_per_s"] else 0.0
        target = TARGETS["pipeline_vs_bare_insert"]
        r["ratio_vs_bare_insert"] = round(ratio, 3)
        rows.append(
            [
                "6 pipeline intake",
                case,
                f"{spread(r, 'ok_per_s', unit='/s')}",
                f"{r['p50_ms']:.1f} / {spread(r, 'p99_ms', '{:.1f}')}",
                f"bare insert {spread(floor, 'ok_per_s', unit='/s')}, p99 {floor['p99_ms']:.1f}",
                f"{ratio:.2f}",
                f">= {target:.2f}",
                verdict(ratio >= target),
            ]
        )
        share = r["deliveries_per_s"] / r["ok_per_s"] if r["ok_per_s"] else 0.0
        r["deliveries_vs_intake"] = round(share, 3)
        fast = r["spp_latency_ms"] == 0
        rows.append(
            [
                "6 pipeline deliveries",
                case,
                f"{spread(r, 'deliveries_per_s', unit='/s')} during the load",
                "",
                f"intake {r['ok_per_s']:.0f}/s",
                f"{share:.2f}",
                f">= {TARGETS['pipeline_deliveries_vs_intake_0ms']:.2f}" if fast else "(info)",
                verdict(share >= TARGETS["pipeline_deliveries_vs_intake_0ms"]) if fast else "-",
            ]
        )
        rows.append(
            [
                "6 pipeline backlog",
                case,
                f"{spread(r, 'backlog')} left when the load stopped",
                "",
                drain_text(r),
                "",
                "(info)",
                "-",
            ]
        )
        if r["connections"] == 16:
            rows.append(
                [
                    "6 pipeline p99",
                    case,
                    f"{spread(r, 'p99_ms', '{:.1f}', ' ms')}",
                    "",
                    f"bare insert {floor['p99_ms']:.1f} ms",
                    "",
                    f"< {TARGETS['p99_ms_16']:.0f} ms",
                    verdict(r["p99_ms"] < TARGETS["p99_ms_16"]),
                ]
            )
    return rows


def print_table(rows: list[list[str]]) -> None:
    head = ["scenario", "case", "measured", "p50 / p99 ms", "floor", "ratio", "target", "result"]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="seconds per load run (default 5; 3 with --quick)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of a few minutes: one run each, fewer and shorter"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="interleaved runs per accept figure, the median reported (default 3)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run, of {', '.join(SCENARIOS)} (memory is always reported)",
    )
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=None,
        help="seconds to wait for the pipeline's backlog to drain (default 15; 8 with --quick)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--database", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG), help="PostgreSQL to use when it answers"
    )
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), default="auto", help="load tool (auto: wrk if installed)"
    )
    parser.add_argument(
        "--drain-events", type=int, default=None, help="events per drain run (default 1000; 300 with --quick)"
    )
    args = parser.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if not only or only - set(SCENARIOS):
        parser.error(f"--only takes scenarios of {', '.join(SCENARIOS)}")
    duration = args.duration or (3.0 if args.quick else 5.0)
    rounds = args.runs or (1 if args.quick else 3)
    drain_limit = args.drain_limit or (8.0 if args.quick else 15.0)
    drain_events = args.drain_events or (300 if args.quick else 1000)
    conns = [16] if args.quick else [16, 64]
    drain_configs = (
        [(0, 4, 1), (DRAIN_MS, 16, 2)]
        if args.quick
        else [(lat, c, p) for lat in (0, DRAIN_MS) for c in (4, 16) for p in (1, 2)]
    )

    tool = args.loadgen
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    elif tool == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    data = work / "bodies"
    data.mkdir()
    (data / "json_token").write_text(JSON_TOKEN + "\n")
    boundary, prefix, suffix = mailgun_parts()
    (data / "boundary").write_text(boundary + "\n")
    (data / "prefix.bin").write_bytes(prefix)
    (data / "suffix.bin").write_bytes(suffix)
    mailgun_size = len(prefix) + len(suffix) + 4 * 130
    load = Load(tool, data, pool=int(max(5000, 3000 * duration)))

    b = Bench(args, work)
    report: dict[str, Any] = {
        "accept": [],
        "spp_latency": [],
        "drain": [],
        "bare_loop": {},
        "bare_insert": [],
        "pipeline": [],
        "memory_mb": {},
    }
    dbs: list[str] = []
    failed: BaseException | None = None
    log(f"bench: load from {tool}, {duration:g} s per run; logs in {work}")
    try:
        b.start_sandboxes([0, DRAIN_MS, SLOW_MS])
        sqlite_path = work / "bridge.db"
        b.start_web("sqlite", Db("sqlite", "", path=sqlite_path), f"sqlite:///{sqlite_path}")
        dbs.append("sqlite")
        if not args.no_postgres:
            made = pg_schema(args.database, "bench")
            if made:
                url, schema = made
                b.schemas.append(schema)
                b.start_web("postgresql", Db("postgresql", args.database, schema=schema), url)
                dbs.append("postgresql")
        b.start_bare()
        primary = dbs[-1]  # PostgreSQL when there is one: what production runs on
        log(f"up: sandboxes {b.sandboxes}, bridge on {dbs}, bare on {b.bare[1] if b.bare else '?'}")

        warmup = 1.0 if args.quick else 2.0
        mem3: dict[str, float] = {}
        mem4: dict[str, float] = {}
        mem6: dict[str, float] = {}
        if "accept" in only:
            report["accept"] = accept_runs(b, load, dbs, conns, duration, warmup, rounds)
            log("parsing the Mailgun body with three multipart parsers")
            body = multipart_parsers.body_of(boundary, prefix, suffix)
            content_type = f"multipart/form-data; boundary={boundary}"
            report["multipart_parsers"] = multipart_parsers.compare(body, content_type, rounds=max(rounds, 3))
        if "slow" in only:
            s3, mem3 = slow_runs(b, load, [primary] if args.quick else dbs, duration, rounds)
            report["spp_latency"] = s3
        if "drain" in only:
            loops = sorted({(lat, c * p) for lat, c, p in drain_configs})
            report["bare_loop"] = bare_loops(b, loops, min(drain_events, 1000))
            s4, mem4 = drain_runs(b, primary, drain_events, drain_configs)
            report["drain"] = s4
        if "pipeline" in only:
            pipeline_conns = [16, 64]  # both, also with --quick: the p99 target is at 16, 64 is production's burst
            floors6, s6, mem6 = pipeline_runs(b, load, dbs, pipeline_conns, duration, drain_limit, rounds, warmup)
            report["bare_insert"], report["pipeline"] = floors6, s6

        memory: dict[str, float] = {}
        for name, (proc, _, _, _) in b.webs.items():
            memory[f"web {name} master"] = memory_of(proc.pid)
            for n, pid in enumerate(sorted(children(proc.pid)), 1):
                memory[f"web {name} worker {n}"] = memory_of(pid)
        memory.update(mem3)
        memory.update(mem4)
        memory.update(mem6)
        if b.bare:
            memory["bare app master"] = memory_of(b.bare[0].pid)
            for n, pid in enumerate(sorted(children(b.bare[0].pid)), 1):
                memory[f"bare app worker {n}"] = memory_of(pid)
        for latency, proc in b.sandbox_procs.items():
            memory[f"sandbox {latency} ms"] = memory_of(proc.pid)
        report["memory_mb"] = memory
    except (KeyboardInterrupt, Interrupted) as exc:
        failed = exc
        log(f"interrupted ({type(exc).__name__}); stopping everything")
    except Exception as exc:
        failed = exc
        log(f"error: {type(exc).__name__}: {exc}")
    finally:
        b.stop_all()
        for schema in b.schemas:
            for attempt in range(10):  # PostgreSQL may be restarting (other tests on the machine)
                try:
                    drop_schema(args.database, schema)
                    break
                except Exception as exc:
                    log(f"could not drop schema {schema} (attempt {attempt + 1}): {type(exc).__name__}")
                    time.sleep(3)
        for db_file in work.glob("bridge.db*"):
            db_file.unlink()
        shutil.rmtree(data, ignore_errors=True)

    elapsed = time.monotonic() - began
    rows = build_rows(report, dbs) if failed is None else []
    report["meta"] = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(elapsed, 1),
        "quick": args.quick,
        "scenarios": sorted(only),
        "runs_per_accept_figure": rounds,
        "duration_s": duration,
        "pipeline_drain_limit_s": drain_limit,
        "load_tool": tool,
        "databases": dbs,
        "connections": conns,
        "drain_events": drain_events,
        "mailgun_body_bytes": mailgun_size,
        "mailgun_bodies": "unique Message-Id and token per request (pre-signed pool; a wrap would be duplicates)",
        "gunicorn": {
            "workers": 2,
            "threads": 4,
            "worker_class": "bridge.server.BufferingThreadWorker",
            "config": "gunicorn.conf.py",
        },
        "cpus": os.cpu_count(),
        "logs": str(work),
        "targets": TARGETS,
        "error": repr(failed) if failed else None,
    }
    report["table"] = rows
    out = BENCH / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if failed is not None:
        print(f"bench did not finish: {failed!r}; partial results in {path}; logs in {work}")
        return 130 if isinstance(failed, KeyboardInterrupt | Interrupted) else 1
    print()
    print(
        f"bench: {tool}, {duration:g} s per run, databases {', '.join(dbs)}, "
        f"Mailgun post {mailgun_size / 1000:.1f} kB with a unique Message-Id per request; {elapsed:.0f} s in all"
    )
    print_table(rows)
    fails = sum(1 for row in rows if row[-1] == "FAIL")
    print(f"\n{sum(1 for row in rows if row[-1] == 'PASS')} PASS, {fails} FAIL; report: {path}; logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
