"""Soak: a steady webhook rate for a while, then the counts that matter (``make soak``).

Starts its own SPP sandbox (50 ms latency), the web process under gunicorn with the
Procfile's settings, and one delivery worker, on PostgreSQL when one answers (a schema of its
own, dropped at the end) or else on a temporary SQLite file. It posts unique JSON bodies at a
fixed rate, waits for the queue to drain, and reports: requests accepted, tickets delivered,
events lost, duplicate tickets, accept latency (p50/p99) and every process's resident memory
at the start and at the end. Loopback only; bounded in time; stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import BIN, ROOT, children, database, free_port, rss_mb

TOKEN, SPP_TOKEN, ADMIN = "soak-secret-token", "soak-spp-token", "soak-admin-token"


class Stack:
    def __init__(self, db_url: str, workdir: Path) -> None:
        self.web_port, self.spp_port = free_port(), free_port()
        sources = workdir / "sources.yml"
        sources.write_text(f"defaults: {{user_id: 1}}\nsources:\n  soak: {{kind: json, secret: {TOKEN}}}\n")
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "SPP_API_URL": f"http://127.0.0.1:{self.spp_port}",
            "SPP_API_TOKEN": SPP_TOKEN,
            "BRIDGE_SOURCES_FILE": str(sources),
            "BRIDGE_ADMIN_TOKEN": ADMIN,
            "PORT": str(self.web_port),
            "LOG_FORMAT": "text",
        }
        self.logs = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        flask = [str(BIN / "flask"), "--app", "wsgi", "bridge"]
        subprocess.run([*flask, "migrate"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        self._spawn(
            "sandbox",
            [*flask, "sandbox", "--port", str(self.spp_port), "--token", SPP_TOKEN, "--latency-ms", "50", "--quiet"],
        )
        gunicorn = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.web_port}"]
        self._spawn("web", [*gunicorn, "wsgi:app"])
        self._spawn("worker", [*flask, "worker"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the web process did not come up; see " + str(self.logs))

    def _spawn(self, name: str, args: list[str]) -> None:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def memory(self) -> dict[str, float]:
        result = {name: rss_mb(p.pid) for name, p in self.procs.items()}
        for n, pid in enumerate(children(self.procs["web"].pid), 1):
            result[f"web-{n}"] = rss_mb(pid)
        return {k: round(v, 1) for k, v in result.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def load(base: str, rate: float, duration: float) -> tuple[list[float], dict[int, int]]:
    """Post unique bodies at ``rate`` per second for ``duration`` seconds; latencies in ms."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    session = requests.Session()

    def one(n: int) -> None:
        body = {"email": f"soak{n}@example.com", "subject": f"Soak {n}", "message": secrets.token_hex(16)}
        started = time.perf_counter()
        try:
            code = session.post(
                f"{base}/hooks/soak", json=body, headers={"X-Bridge-Token": TOKEN}, timeout=10
            ).status_code
        except requests.RequestException:
            code = 0
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[code] = statuses.get(code, 0) + 1

    threads: list[threading.Thread] = []
    start, n = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < duration:
        while n < elapsed * rate:
            thread = threading.Thread(target=one, args=(n,), daemon=True)
            thread.start()
            threads.append(thread)
            n += 1
        time.sleep(0.005)
        threads = [t for t in threads if t.is_alive()]
    for thread in threads:
        thread.join(15)
    return latencies, statuses


def counts(stack: Stack, accepted: int, drain_seconds: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + drain_seconds
    while time.monotonic() < deadline:
        metrics = requests.get(f"{stack.base}/metrics", headers=headers, timeout=10).text
        depth = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("bridge_queue_depth"))
        if depth == 0:
            break
        time.sleep(1)
    by_status = {
        line.split('"')[1]: int(float(line.split()[-1]))
        for line in metrics.splitlines()
        if line.startswith("bridge_events{")
    }
    tickets = requests.get(f"http://127.0.0.1:{stack.spp_port}/_sandbox/tickets", timeout=30).json()["tickets"]
    per_event: dict[str, int] = {}
    for ticket in tickets:
        key = ticket["request"]["metadata"]["bridge_event_id"]
        per_event[key] = per_event.get(key, 0) + 1
    delivered = by_status.get("delivered", 0)
    return {
        "accepted": accepted,
        "delivered": delivered,
        "lost": accepted - sum(by_status.values()),
        "undelivered_at_end": {s: c for s, c in by_status.items() if s != "delivered"},
        "tickets": len(tickets),
        "duplicates": sum(c - 1 for c in per_event.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of steady load (default 600)")
    parser.add_argument("--rate", type=float, default=20, help="webhooks per second (default 20)")
    parser.add_argument(
        "--database", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()

    db_url, schema = database(args.database)
    workdir = Path(tempfile.mkdtemp(prefix="soak-logs-"))
    stack = Stack(db_url, workdir)
    try:
        stack.start()
        time.sleep(2)
        memory_start = stack.memory()
        where = "PostgreSQL" if schema else "SQLite"
        print(f"soak: {args.rate:g}/s for {args.duration:g} s on {where}; logs in {workdir}")
        latencies, statuses = load(stack.base, args.rate, args.duration)
        result = counts(stack, statuses.get(200, 0), drain_seconds=120)
        memory_end = stack.memory()
    finally:
        stack.stop()
        if schema:
            import psycopg

            with psycopg.connect(args.database, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    latencies.sort()
    report = {
        **result,
        "requests": sum(statuses.values()),
        "answers": statuses,
        "accept_ms_p50": round(statistics.median(latencies), 1),
        "accept_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1], 1),
        "rss_mb_start": memory_start,
        "rss_mb_end": memory_end,
        "database": "postgresql" if schema else "sqlite",
        "rate_per_s": args.rate,
        "duration_s": args.duration,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for key in ("requests", "accepted", "delivered", "lost", "duplicates", "accept_ms_p50", "accept_ms_p99"):
        print(f"{key:>16}: {report[key]}")
    for name in memory_start:
        print(f"{'rss ' + name:>16}: {memory_start[name]} MB -> {memory_end.get(name, '?')} MB")
    print(f"report: {path}")
    return 0 if report["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
