"""The drain floor for bench/bench.py: a bare loop of ``requests.Session`` calls to the SPP sandbox.

A delivery is the two requests the bridge makes for an event (docs/conversations.md): ``POST
{url}/api/tickets``, then, with the id from its answer, ``POST {url}/api/ticket_messages/{id}``.
``--threads`` threads (one Session each) make ``--count`` deliveries in all; one JSON object goes
to stdout (deliveries, requests, seconds, deliveries per second, statuses per request kind).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time

import requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--count", type=int, default=1000, help="deliveries (ticket + message) in all")
    args = parser.parse_args()

    numbers = itertools.count()
    statuses: dict[str, dict[str, int]] = {"ticket": {}, "message": {}}
    counts = {"deliveries": 0, "requests": 0}
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {args.token}", "X-Api-Version": "2024-03-05"}

    def record(kind: str, code: int, delivered: bool = False) -> None:
        with lock:
            statuses[kind][str(code)] = statuses[kind].get(str(code), 0) + 1
            counts["requests"] += 1
            counts["deliveries"] += delivered

    def loop() -> None:
        session = requests.Session()
        while (n := next(numbers)) < args.count:
            body = {"user_id": 1, "subject": f"Bare loop {n}", "note": "bench", "metadata": {"n": str(n)}}
            ticket_id = None
            try:
                answer = session.post(f"{args.url}/api/tickets", json=body, headers=headers, timeout=30)
                code = answer.status_code
                if code == 201:
                    ticket_id = answer.json().get("id")
            except (requests.RequestException, ValueError):
                code = 0
            record("ticket", code)
            if ticket_id is None:
                continue
            message = {"message": f"Bare loop message {n}", "user_id": 1}
            try:
                url = f"{args.url}/api/ticket_messages/{ticket_id}"
                code = session.post(url, json=message, headers=headers, timeout=30).status_code
            except requests.RequestException:
                code = 0
            record("message", code, delivered=code == 201)
        session.close()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.threads)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.perf_counter() - started
    done = counts["deliveries"]
    print(
        json.dumps(
            {
                "deliveries": done,
                "requests": counts["requests"],
                "seconds": round(elapsed, 3),
                "per_s": round(done / elapsed, 1),
                "statuses": statuses,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
