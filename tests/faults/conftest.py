"""Fixtures of the fault suite: a sandbox of each test's own, app factories, the count report.

Every scenario ends with a count (events accepted, tickets created, duplicates, events lost).
The ``fault_report`` fixture prints it, writes it as one line of JSON to
``test-artifacts/faults/<scenario>.json`` and lists it in pytest's terminal summary, so the
counts are visible without ``-s``.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bridge.app import create_app
from bridge.migrate import upgrade
from bridge.runtime import get_runtime
from bridge.sandbox import Sandbox, SandboxServer
from tests.conftest import DEFAULT_SOURCES, SPP_TOKEN, bridge_env

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "faults"
LONG = os.environ.get("BRIDGE_FAULTS", "").strip().lower() == "long"
SUMMARIES = pytest.StashKey[list[dict[str, Any]]]()

# Faster than the fixtures' defaults where the brief asks for it; scenarios add their own.
FAULT_ENV = {"BRIDGE_RETRY_BASE_SECONDS": "0.05", "BRIDGE_RETRY_MAX_SECONDS": "0.5"}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SUMMARIES] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    summaries = config.stash.get(SUMMARIES, [])
    if not summaries:
        return
    terminalreporter.section(f"fault suite counts ({'long' if LONG else 'short'} version)")
    for s in summaries:
        terminalreporter.write_line(one_line(s))


def one_line(s: dict[str, Any]) -> str:
    return (
        f"{s['scenario']}: accepted={s['events_accepted']} tickets={s['tickets_created']} "
        f"duplicates={s['duplicates']} (events with an ambiguous attempt: {s['events_with_ambiguous_attempt']}, "
        f"unexplained: {s['unexplained_duplicates']}) lost={s['events_lost']} "
        f"attempts={s['attempts']} ambiguous={s['ambiguous_attempts']} in {s['duration_s']} s"
    )


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], None]:
    """Print a scenario's summary, write it to test-artifacts/faults/ and keep it for the terminal summary."""

    def report(summary: dict[str, Any]) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        line = json.dumps(summary, sort_keys=True, default=str)
        (ARTIFACTS / f"{summary['scenario']}.json").write_text(line + "\n")
        print(f"FAULTS {one_line(summary)}")
        request.config.stash[SUMMARIES].append(summary)

    return report


@pytest.fixture
def fault_sandbox() -> Iterator[SandboxServer]:
    """A sandbox of this test's own: tickets created late by a hung or killed request stay here."""
    server = SandboxServer(Sandbox(token=SPP_TOKEN, seed=int(os.environ.get("BRIDGE_FAULTS_SEED", "0") or 0))).start()
    yield server
    server.stop()


@pytest.fixture
def fault_env(tmp_path: Path, fault_sandbox: SandboxServer) -> Callable[..., dict[str, str]]:
    """The environment of a bridge process on ``db`` talking to this test's sandbox."""
    sources = tmp_path / "sources.yml"
    sources.write_text(textwrap.dedent(DEFAULT_SOURCES))

    def make(db: str, **extra: str) -> dict[str, str]:
        return bridge_env(db, fault_sandbox.url, sources, **{**FAULT_ENV, **extra})

    return make


@pytest.fixture
def fault_app(fault_env: Callable[..., dict[str, str]]) -> Iterator[Callable[..., Flask]]:
    """Build a migrated app (in this process) from ``fault_env(db, **extra)``."""
    apps: list[Flask] = []

    def make(db: str, **extra: str) -> Flask:
        app = create_app(env=fault_env(db, **extra))
        upgrade(get_runtime(app).store.engine)
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_runtime(app).store.engine.dispose()
