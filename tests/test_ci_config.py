"""The GitHub CI files: valid YAML of the expected shape, and the same lint and tests as .ci/run.

GitHub itself cannot be reached from here, so what can be checked locally is: the workflow runs
the very `make` targets .ci/run runs, with the variables .ci/run exports, against PostgreSQL 16
and Debian's Chromium; the audit job pins pip-audit; Dependabot watches pip and the actions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
CI_RUN = ROOT / ".ci" / "run"


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name} is not a YAML mapping"
    return document


def commands(job: dict[str, Any]) -> list[str]:
    """Every command line of the job's `run` steps, in order."""
    return [line.strip() for step in job["steps"] if "run" in step for line in step["run"].splitlines() if line.strip()]


def ci_run_make_targets() -> list[str]:
    return re.findall(r"^\s*(make\s+[\w-]+)\s*$", CI_RUN.read_text(), flags=re.MULTILINE)


def ci_run_exports() -> list[str]:
    return re.findall(r"^\s*export\s+(\w+)=", CI_RUN.read_text(), flags=re.MULTILINE)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load(WORKFLOW)


@pytest.fixture(scope="module")
def test_job(workflow: dict[str, Any]) -> dict[str, Any]:
    [job] = [job for job in workflow["jobs"].values() if any(c.startswith("make test") for c in commands(job))]
    return job


def test_the_workflow_runs_on_pushes_and_pull_requests(workflow: dict[str, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert isinstance(triggers, dict)
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert job["runs-on"] and job["timeout-minutes"] > 0
        assert all(re.search(r"@v\d+", step["uses"]) for step in job["steps"] if "uses" in step)


def test_the_workflow_runs_what_ci_run_runs(test_job: dict[str, Any]) -> None:
    targets = ci_run_make_targets()
    assert targets == ["make lint", "make test"]
    assert [c for c in commands(test_job) if c.startswith("make ")] == targets
    exported = ci_run_exports()
    assert {"TEST_DATABASE_URL", "BRIDGE_REQUIRE_POSTGRES", "BRIDGE_REQUIRE_BROWSER"} <= set(exported)
    assert set(exported) <= set(test_job["env"])
    assert test_job["env"]["BRIDGE_REQUIRE_POSTGRES"] == test_job["env"]["BRIDGE_REQUIRE_BROWSER"] == "1"


def test_postgres_16_with_trust_auth_is_the_test_database(test_job: dict[str, Any]) -> None:
    [(name, service)] = test_job["services"].items()
    assert service["image"] == "postgres:16"
    assert service["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "5432:5432" in service["ports"]
    assert "pg_isready" in service["options"]
    url = urlsplit(test_job["env"]["TEST_DATABASE_URL"])
    assert (url.scheme, url.username, url.password, url.port) == ("postgresql", "postgres", None, 5432)
    assert url.path == f"/{service['env']['POSTGRES_DB']}"
    # a job in a container reaches the service by its name; one on the runner through the port
    assert url.hostname == (name if "container" in test_job else "127.0.0.1")


def test_the_browser_tests_get_debian_chromium_and_the_project_python(test_job: dict[str, Any]) -> None:
    image = test_job["container"]["image"]
    python = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(rf"python:{re.escape(python)}(\.\d+)?-(bookworm|trixie)", image), image
    assert any(re.search(r"apt-get install .*\bchromium\b", c) for c in commands(test_job))


def test_the_audit_pins_pip_audit_and_reads_requirements_txt(workflow: dict[str, Any]) -> None:
    lines = [c for job in workflow["jobs"].values() for c in commands(job)]
    assert any(re.fullmatch(r"python -m pip install pip-audit==\d+\.\d+\.\d+", c) for c in lines), lines
    assert "pip-audit -r requirements.txt" in lines


def test_dependabot_watches_pip_and_the_actions_weekly() -> None:
    config = load(DEPENDABOT)
    assert config["version"] == 2
    watched = {(u["package-ecosystem"], u["directory"], u["schedule"]["interval"]) for u in config["updates"]}
    assert watched == {("pip", "/", "weekly"), ("github-actions", "/", "weekly")}
