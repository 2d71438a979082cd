"""The drain floor for bench/bench.py: a bare loop of ``requests.Session.post`` to the SPP sandbox.

``--threads`` threads (one Session each) post ``--count`` valid ticket requests in all to
``{url}/api/tickets``; one JSON object goes to stdout (requests, seconds, per second, statuses).
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
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    numbers = itertools.count()
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {args.token}", "X-Api-Version": "2024-03-05"}

    def loop() -> None:
        session = requests.Session()
        while (n := next(numbers)) < args.count:
            body = {"user_id": 1, "subject": f"Bare loop {n}", "note": "bench", "metadata": {"n": str(n)}}
            try:
                code = session.post(f"{args.url}/api/tickets", json=body, headers=headers, timeout=30).status_code
            except requests.RequestException:
                code = 0
            with lock:
                statuses[str(code)] = statuses.get(str(code), 0) + 1
        session.close()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.threads)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.perf_counter() - started
    done = sum(statuses.values())
    print(
        json.dumps(
            {"requests": done, "seconds": round(elapsed, 3), "per_s": round(done / elapsed, 1), "statuses": statuses}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
