"""scripts/run-local.sh (``make run``): a second run on ports already taken stops before starting anything;
the demonstration; the .env it writes, which the flask CLI in a second shell reads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import NO_DOTENV, ROOT, free_port


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
            **NO_DOTENV,
            "PYTHON": sys.executable,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
            "ENV_FILE": str(tmp_path / ".env"),
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
    assert not (tmp_path / ".env").exists()


def test_make_run_shows_a_conversation_with_a_file_and_a_reply(tmp_path: Path) -> None:
    """``make run`` posts two emails once it is up: the ticket's first message carries the PDF, the
    reply is the ticket's second message (docs/conversations.md)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        **NO_DOTENV,
        "PYTHON": sys.executable,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
        "PORT": str(free_port()),
        "SANDBOX_PORT": str(free_port()),
        "ENV_FILE": str(tmp_path / ".env"),
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
        second_shell = _flask_with_env_file(tmp_path, "check", DATABASE_URL=env["DATABASE_URL"])
        failed = _flask_with_env_file(tmp_path, "replay", "--failed", DATABASE_URL=env["DATABASE_URL"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "Demo: two emails from Alice became ticket" in text, text[-2000:]
    assert "message 1 by user 12: 'Hello, the invoice attached shows the wrong address.' (Rechnung März.pdf)" in text
    assert "message 2 by user 12: 'One more thing: the order number is A-7.' (no files)" in text
    assert ") joined it: thread_of evt_" in text
    assert f"wrote {tmp_path / '.env'} (from .env.example)" in text
    written = (tmp_path / ".env").read_text()
    assert f"SPP_API_URL=http://127.0.0.1:{env['SANDBOX_PORT']}\n" in written
    assert "API_TOKEN=dev-api-token\n" in written
    # a second shell: no token in its environment, the CLI reads them from .env
    assert second_shell.returncode == 0, second_shell.stderr
    assert "SPP_API_URL is not set" not in second_shell.stderr
    assert "/hooks/mail" in second_shell.stdout
    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.strip() == "0 queued, 0 not replayed"


def _flask_with_env_file(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``flask --app wsgi bridge …`` as a second shell runs it: only PATH (and the database) set,
    the rest from the .env ``make run`` wrote (``--env-file`` points at it here; in the
    repository the CLI finds ./.env by itself)."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "--env-file", str(tmp_path / ".env"), "bridge", *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **NO_DOTENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_run_reads_the_env_file_and_the_shell_wins(tmp_path: Path) -> None:
    """What scripts/local_env.py exports: the keys of .env the shell has not set."""
    (tmp_path / ".env").write_text("API_TOKEN='from file'\nSPP_API_TOKEN=file-token\n# DATABASE_URL=x\n")
    result = subprocess.run(
        [sys.executable, "scripts/local_env.py", "exports", str(tmp_path / ".env")],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "SPP_API_TOKEN": "from-shell"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "export API_TOKEN='from file'\n"


def test_cli_help_works_before_the_configuration_does(tmp_path: Path) -> None:
    """``flask --app wsgi bridge --help`` lists the commands and says what is wrong; a command
    itself still stops with the one configuration line."""
    env = {"PATH": os.environ.get("PATH", ""), **NO_DOTENV, "BRIDGE_SOURCES_FILE": str(tmp_path / "missing.yml")}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "bridge"]
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 60}
    helped = subprocess.run([*flask, "--help"], **run)  # type: ignore[call-overload]
    assert helped.returncode == 0, helped.stderr
    assert "replay" in helped.stdout and "check" in helped.stdout
    assert "The configuration is not valid yet:" in helped.stdout and "missing.yml" in helped.stdout
    assert subprocess.run([*flask, "replay", "--help"], **run).returncode == 0  # type: ignore[call-overload]
    checked = subprocess.run([*flask, "check"], **run)  # type: ignore[call-overload]
    assert checked.returncode == 1
    assert (
        checked.stderr.strip()
        == f"configuration error: {tmp_path / 'missing.yml'}: cannot read (No such file or directory)"
    )
