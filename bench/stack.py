"""Helpers shared by bench/soak.py and bench/bench.py: ports, processes, memory, databases.

Loopback only. Every process is started in a session of its own (so a Ctrl-C in the terminal
reaches only the script, which then stops them in order) and is stopped by its own id.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FLASK = [str(BIN / "flask"), "--app", "wsgi", "bridge"]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def pg_schema(url: str | None, prefix: str) -> tuple[str, str] | None:
    """(DATABASE_URL with search_path set, schema name) in a new schema of ``url``, or None."""
    if not url:
        return None
    try:
        import psycopg

        schema = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", schema
    except Exception as exc:
        print(f"PostgreSQL not usable ({type(exc).__name__}); using SQLite", flush=True)
        return None


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def database(url: str | None, prefix: str = "soak") -> tuple[str, str | None]:
    """(DATABASE_URL, schema to drop) — PostgreSQL in a schema of its own, else SQLite."""
    made = pg_schema(url, prefix)
    if made:
        return made
    return f"sqlite:///{tempfile.mkdtemp(prefix=f'{prefix}-')}/bridge.db", None


def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """Start ``args`` in ROOT, output to ``logs/<name>.log``, in a session of its own."""
    out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it; closed with the process
    try:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM each process, wait, then SIGKILL the process group of any still running."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
            proc.wait(5)


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30, method: str = "GET") -> None:
    """Until ``url`` answers 2xx (or 4xx for a POST probe); raises if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if requests.request(method, url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")
