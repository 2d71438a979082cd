"""scripts/run-local.sh (``make run``): a second run on ports already taken stops before starting anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port


@pytest.mark.parametrize("taken", ["PORT", "SANDBOX_PORT"])
def test_a_second_run_on_a_port_in_use_stops_with_one_line(tmp_path: Path, taken: str) -> None:
    """The first run's gunicorn listens with SO_REUSEPORT (gunicorn.conf.py), which would let a
    second one bind beside it and take half the requests."""
    with socket.socket() as first_run:
        first_run.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first_run.bind(("127.0.0.1", 0))
        first_run.listen()
        ports = {"PORT": str(free_port()), "SANDBOX_PORT": str(free_port()), taken: str(first_run.getsockname()[1])}
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHON": sys.executable,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
            **ports,
        }
        proc = subprocess.Popen(
            ["bash", "scripts/run-local.sh"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.communicate(timeout=30)
            pytest.fail("run-local.sh started beside the running one")
    assert proc.returncode == 1
    assert stdout == ""
    assert stderr.splitlines() == [
        f"error: port {ports[taken]} is already in use (another `make run`?);"
        " stop it, or choose others: make run PORT=... SANDBOX_PORT=..."
    ]
    assert not (tmp_path / "bridge.db").exists()  # not even migrated


def test_make_run_shows_a_conversation_with_a_file_and_a_reply(tmp_path: Path) -> None:
    """``make run`` posts two emails once it is up: the ticket's first message carries the PDF, the
    reply is the ticket's second message (docs/conversations.md)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHON": sys.executable,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
        "PORT": str(free_port()),
        "SANDBOX_PORT": str(free_port()),
    }
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "scripts/run-local.sh"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "the events:" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "Demo: two emails from Alice became ticket" in text, text[-2000:]
    assert "message 1 by user 12: 'Hello, the invoice attached shows the wrong address.' (Rechnung März.pdf)" in text
    assert "message 2 by user 12: 'One more thing: the order number is A-7.' (no files)" in text
    assert ") joined it: thread_of evt_" in text
