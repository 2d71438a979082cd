"""Whatever arrives at /hooks/<source>, the answer is one of those documented, never a 500."""

from __future__ import annotations

import json
import textwrap

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import create_app
from bridge.migrate import upgrade
from bridge.runtime import get_runtime
from tests.conftest import API_SECRET, DEFAULT_SOURCES, bridge_env

CONTRACT_ANSWERS = {200, 303, 400, 401, 413, 415, 422}
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=xYzZY",
        "text/plain",
        "",
        "application/json; boundary=",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """One app for all examples: SPP is never called (nothing delivers here)."""
    path = tmp_path_factory.mktemp("fuzz")
    (path / "sources.yml").write_text(textwrap.dedent(DEFAULT_SOURCES))
    app = create_app(env=bridge_env(f"sqlite:///{path / 'b.db'}", "http://127.0.0.1:9", path / "sources.yml"))
    upgrade(get_runtime(app).store.engine)
    return app


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=st.sampled_from(["api", "open", "contact"]),
    body=st.binary(max_size=300),
    content_type=CONTENT_TYPES,
    with_token=st.booleans(),
)
def test_random_bytes_get_a_documented_answer(fuzz_app: Flask, source, body, content_type, with_token) -> None:
    headers = {"Content-Type": content_type, **({"X-Bridge-Token": API_SECRET} if with_token else {})}
    response = fuzz_app.test_client().post(f"/hooks/{source}", data=body, headers=headers)
    assert response.status_code in CONTRACT_ANSWERS, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert set(response.get_json()) >= {"error", "message"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_any_json_value_gets_a_documented_answer(fuzz_app: Flask, value) -> None:
    response = fuzz_app.test_client().post("/hooks/open", data=json.dumps(value), content_type="application/json")
    assert response.status_code in {200, 400, 422}, response.get_data(as_text=True)
