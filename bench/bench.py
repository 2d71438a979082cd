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
  2. the same with a signed Mailgun multipart post of ~20 kB (a new Message-Id and token each time)
  3. accept rate with a worker delivering to a 5000 ms sandbox vs a 0 ms one
  4. drain of N queued events at 0 and 50 ms, BRIDGE_DELIVERY_CONCURRENCY 4 and 16, 1 and 2 workers;
     a delivery is two calls (ticket, then its message), so vs concurrency x processes / (2 x latency)
     and vs a bare requests.Session loop making the same two calls; every delivered event must
     have left exactly one ticket with one message in the sandbox
  5. resident memory of every web and worker process after the runs
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

    def part(name: str, value: str) -> bytes:
        return f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()

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
        prefix = b"".join(part(k, str(v)) for k, v in fields.items())
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
        done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, start_new_session=True)
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
        self, name: str, count: int, concurrency: int, latency: int, tag: str
    ) -> list[subprocess.Popen[bytes]]:
        _, _, _, env = self.webs[name]
        env = {**env, "BRIDGE_DELIVERY_CONCURRENCY": str(concurrency)}
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


def accept_runs(
    b: Bench, load: Load, dbs: list[str], conns: list[int], duration: float, warmup: float
) -> list[dict[str, Any]]:
    """Scenarios 1 and 2: each (body, connections) on the bare endpoint, then on each database.

    Each target gets an unrecorded ``warmup`` run per body first, so that no side pays for
    first requests (imports, pools, caches) in its figures.
    """
    results = []
    assert b.bare is not None
    for mode, source in (("json", "bench"), ("mailgun", "mail")):
        for c in conns:
            for target in ["bare", *dbs]:
                if target == "bare":
                    url, db = f"http://127.0.0.1:{b.bare[1]}/hooks/{source}", None
                else:
                    _, port, db, _ = b.webs[target]
                    url = f"http://127.0.0.1:{port}/hooks/{source}"
                if c == conns[0] and warmup > 0:
                    load.run(url, mode, c, warmup)
                unusable = "source = ? AND status IN ('failed', 'discarded')"
                before = (db.count("source = ?", source), db.count(unusable, source)) if db else (0, 0)
                result = load.run(url, mode, c, duration)
                if db:
                    time.sleep(0.2)
                    # stored may exceed wrk's count: requests in flight when it stopped are stored too
                    result["stored"] = db.count("source = ?", source) - before[0]
                    result["stored_failed_or_discarded"] = db.count(unusable, source) - before[1]
                result.update(scenario="accept", target=target, body=mode)
                log(
                    f"accept {mode:7} c={c:<3} {target:10} {result['ok_per_s']:8.1f}/s p50 {result['p50_ms']:.1f} "
                    f"p99 {result['p99_ms']:.1f} ms {result['statuses']} stored {result.get('stored', '-')} "
                    f"(failed/discarded {result.get('stored_failed_or_discarded', '-')})"
                )
                results.append(result)
                time.sleep(0.5)
    return results


def slow_runs(b: Bench, load: Load, dbs: list[str], duration: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Scenario 3: accept rate at 16 connections with a worker delivering to a fast, then a slow SPP."""
    results, memory = [], {}
    for name in dbs:
        _, port, db, _ = b.webs[name]
        for latency in (0, SLOW_MS):
            db.clear()
            workers = b.start_workers(name, 1, 4, latency, f"s3-{name}-{latency}ms")
            try:
                time.sleep(0.5)
                result = load.run(f"http://127.0.0.1:{port}/hooks/bench", "json", 16, duration)
                result.update(
                    scenario="spp_latency",
                    target=name,
                    spp_latency_ms=latency,
                    delivered_during=db.count("status = 'delivered'"),
                    stored=db.count(),
                )
                memory[f"delivery worker (scenario 3, {name}, SPP {latency} ms)"] = memory_of(workers[0].pid)
            finally:
                stop(workers, timeout=15)
                b.procs[:] = [p for p in b.procs if p not in workers]
            log(
                f"SPP {latency:>4} ms {name:10} accept {result['ok_per_s']:8.1f}/s p99 {result['p99_ms']:.1f} ms, "
                f"delivered meanwhile {result['delivered_during']} of {result['stored']}"
            )
            results.append(result)
    return results, memory


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
                f"{r['ok_per_s']:.0f}/s{stored}",
                f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}",
                f"bare {floor['ok_per_s']:.0f}/s, p99 {floor['p99_ms']:.1f}",
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
                    f"{r['p99_ms']:.1f} ms",
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
                    f"{slow['ok_per_s']:.0f}/s",
                    f"{slow['p50_ms']:.1f} / {slow['p99_ms']:.1f}",
                    f"SPP 0 ms {fast['ok_per_s']:.0f}/s, p99 {fast['p99_ms']:.1f}",
                    f"{ratio:.2f}",
                    f">= {TARGETS['slow_vs_fast']:.2f}",
                    verdict(ratio >= TARGETS["slow_vs_fast"]),
                ]
            )
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
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per load run (default 10; 3 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute: fewer, shorter runs")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--database", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG), help="PostgreSQL to use when it answers"
    )
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), default="auto", help="load tool (auto: wrk if installed)"
    )
    parser.add_argument(
        "--drain-events", type=int, default=None, help="events per drain run (default 2000; 300 with --quick)"
    )
    args = parser.parse_args()
    duration = args.duration or (3.0 if args.quick else 10.0)
    drain_events = args.drain_events or (300 if args.quick else 2000)
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
    report: dict[str, Any] = {"accept": [], "spp_latency": [], "drain": [], "bare_loop": {}, "memory_mb": {}}
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

        report["accept"] = accept_runs(b, load, dbs, conns, duration, warmup=1.0 if args.quick else 2.0)
        s3, mem3 = slow_runs(b, load, [primary] if args.quick else dbs, duration)
        report["spp_latency"] = s3
        loops = sorted({(lat, c * p) for lat, c, p in drain_configs})
        report["bare_loop"] = bare_loops(b, loops, min(drain_events, 1000))
        s4, mem4 = drain_runs(b, primary, drain_events, drain_configs)
        report["drain"] = s4

        memory: dict[str, float] = {}
        for name, (proc, _, _, _) in b.webs.items():
            memory[f"web {name} master"] = memory_of(proc.pid)
            for n, pid in enumerate(sorted(children(proc.pid)), 1):
                memory[f"web {name} worker {n}"] = memory_of(pid)
        memory.update(mem3)
        memory.update(mem4)
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
        "duration_s": duration,
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
