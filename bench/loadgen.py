"""Python load generator for bench/bench.py, used when wrk is not installed.

N connections (one thread each, http.client with keep-alive) post unique bodies to one URL for a
fixed duration, then one JSON object goes to stdout: requests, requests per second, p50/p99 in ms
and the count of each status (0 = a connection error). The bodies are the same as
bench/unique.lua makes from the same data directory (``json``: a unique JSON object;
``mailgun``: a multipart post with a new Message-Id and the next pre-signed token).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit


def part(boundary: str, name: str, value: str) -> bytes:
    return f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


class Bodies:
    def __init__(self, mode: str, data: Path, run_id: str, connections: int) -> None:
        self.mode, self.run_id, self.connections = mode, run_id, connections
        if mode == "json":
            self.headers = {
                "Content-Type": "application/json",
                "X-Bridge-Token": (data / "json_token").read_text().strip(),
            }
        else:
            self.boundary = (data / "boundary").read_text().strip()
            self.prefix, self.suffix = (data / "prefix.bin").read_bytes(), (data / "suffix.bin").read_bytes()
            self.signed = (data / "tokens.txt").read_text().split("\n")
            self.signed = [line for line in self.signed if line]
            self.headers = {"Content-Type": f"multipart/form-data; boundary={self.boundary}"}
        self.wraps = 0

    def body(self, conn_id: int, n: int) -> bytes:
        tag = f"{self.run_id}-{conn_id}-{n}"
        if self.mode == "json":
            return json.dumps(
                {
                    "email": f"bench{conn_id}-{n}@example.com",
                    "name": "Bench User",
                    "subject": f"Bench {tag}",
                    "message": f"Load test message {tag} {os.urandom(8).hex()}",
                }
            ).encode()
        # this connection's share of the pool: lines conn_id, conn_id + connections, ...
        index = conn_id + n * self.connections
        if index >= len(self.signed):
            self.wraps += 1  # approximate under threads; the same token + Message-Id = a duplicate
        index %= len(self.signed)
        stamp, token, signature = self.signed[index].split()
        b = self.boundary
        return b"".join(
            (
                self.prefix,
                part(b, "timestamp", stamp),
                part(b, "token", token),
                part(b, "signature", signature),
                part(b, "Message-Id", f"<bench-{self.run_id}-{index}@bench.example>"),
                self.suffix,
            )
        )


def run(url: str, bodies: Bodies, connections: int, duration: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    latencies: list[list[float]] = [[] for _ in range(connections)]
    statuses: list[dict[int, int]] = [{} for _ in range(connections)]
    start_gate = threading.Barrier(connections + 1)
    stop_at = [0.0]

    def one(conn_id: int) -> None:
        conn: http.client.HTTPConnection | None = None
        mine, counts, n = latencies[conn_id], statuses[conn_id], 0
        start_gate.wait()
        while time.perf_counter() < stop_at[0]:
            body = bodies.body(conn_id, n)
            n += 1
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=10)
                conn.request("POST", path, body=body, headers=bodies.headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = 0
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
            mine.append((time.perf_counter() - started) * 1000)
            counts[status] = counts.get(status, 0) + 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    began, began_epoch = time.perf_counter(), time.time()
    stop_at[0] = began + duration
    start_gate.wait()
    for thread in threads:
        thread.join(duration + 15)
    elapsed = time.perf_counter() - began
    merged = sorted(x for per in latencies for x in per)
    status_counts: dict[str, int] = {}
    for per in statuses:
        for status, count in per.items():
            status_counts[str(status)] = status_counts.get(str(status), 0) + count

    def pct(q: float) -> float:
        return round(merged[min(len(merged) - 1, int(len(merged) * q))], 3) if merged else 0.0

    ok = sum(c for s, c in status_counts.items() if s.startswith(("2", "3")))
    return {
        "requests": len(merged),
        "duration_s": round(elapsed, 3),
        # wall-clock start of the load window, for counting what else happened in it
        "started_epoch": round(began_epoch, 3),
        "load_s": duration,
        "requests_per_s": round(len(merged) / elapsed, 1),
        "ok_per_s": round(ok / elapsed, 1),
        "non_2xx_3xx": len(merged) - ok - status_counts.get("0", 0),
        "connect_errors": status_counts.get("0", 0),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "statuses": status_counts,
        "pool_wraps": bodies.wraps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--mode", choices=("json", "mailgun"), default="json")
    parser.add_argument("--data", type=Path, required=True, help="directory bench.py wrote the body parts to")
    parser.add_argument("--run-id", default=os.urandom(4).hex())
    args = parser.parse_args()
    bodies = Bodies(args.mode, args.data, args.run_id, args.connections)
    print(json.dumps(run(args.url, bodies, args.connections, args.duration)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
