"""/openapi.json: a valid OpenAPI 3 description of docs/behaviour.md section 6, and the app keeps to it.

The property test drives the real Flask app in-process (WSGI) with schemathesis, a bounded
number of examples per operation and a fixed derandomized seed, with the admin bearer.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.runtime import Runtime
from bridge.sandbox import SandboxServer
from tests.conftest import ADMIN_TOKEN, DETAIL_KEYS, SUMMARY_KEYS, admin_headers, api_headers, deliver_all

# docs/behaviour.md sections 4 and 6
DOCUMENTED = {
    ("/hooks/{source}", "post"),
    ("/metrics", "get"),
    ("/api/preview/{source}", "post"),
    ("/api/events", "get"),
    ("/api/events/{event_id}", "get"),
    ("/api/events/{event_id}/replay", "post"),
    ("/api/events/{event_id}/retry", "post"),
    ("/api/events/{event_id}/cancel", "post"),
    ("/api/events/replay", "post"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/openapi.json", "get"),
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item if method in HTTP_METHODS}


def test_the_description_is_valid_openapi_3(app: Flask) -> None:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    loaded = schemathesis.openapi.from_wsgi("/openapi.json", app)
    loaded.validate()  # against the OpenAPI 3.0 meta-schema; raises when invalid
    assert operations(spec) == DOCUMENTED
    assert spec["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, method in DOCUMENTED:
        needs_auth = path.startswith("/api/") or path == "/metrics"
        assert ("security" in spec["paths"][path][method]) is needs_auth, path


def test_documented_keys_match_the_behaviour_doc(app: Flask) -> None:
    schemas = app.test_client().get("/openapi.json").get_json()["components"]["schemas"]
    assert set(schemas["EventSummary"]["properties"]) == SUMMARY_KEYS
    assert set(schemas["EventDetail"]["properties"]) == DETAIL_KEYS
    assert set(schemas["EventList"]["required"]) == {"events", "next_cursor"}
    assert set(schemas["Replayed"]["properties"]) == {"event_id", "status"}
    assert set(schemas["EventState"]["required"]) == {"event_id", "status"}
    assert set(schemas["Retried"]["required"]) == {"event_id", "status", "delivery_paused"}
    assert set(schemas["BulkReplayed"]["required"]) == {"replayed", "not_replayed"}
    assert set(schemas["Error"]["required"]) == {"error", "message"}


def test_the_description_needs_no_token_and_hides_none(make_app: Any) -> None:
    for app in (make_app(), make_app(BRIDGE_ADMIN_TOKEN="")):
        response = app.test_client().get("/openapi.json")
        assert response.status_code == 200
        assert ADMIN_TOKEN not in response.get_data(as_text=True)


# --- real answers conform --------------------------------------------------------------


def _validate(app: Flask, path: str, method: str, **case_kwargs: Any) -> Any:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    case = schema[path][method.upper()].Case(**case_kwargs)
    response = case.call(headers=admin_headers())
    case.validate_response(response, checks=CHECKS, headers=admin_headers())
    return response


def test_real_answers_conform(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    """Events in every reachable state, read and replayed through the documented operations."""
    client = app.test_client()
    sent = [{"email": f"u{n}@example.com", "subject": f"S{n}", "message": "m"} for n in range(3)]
    ids = [client.post("/hooks/api", json=b, headers=api_headers()).get_json()["event_id"] for b in sent]
    sandbox.sandbox.script(201, 422, 503)
    deliver_all(runtime)
    queued = client.post("/hooks/open", json={"email": "q@example.com"}).get_json()["event_id"]

    listing = _validate(app, "/api/events", "get", query={"limit": 2})
    assert listing.status_code == 200 and listing.json()["next_cursor"]
    for event_id in [*ids, queued]:
        assert (
            _validate(app, "/api/events/{event_id}", "get", path_parameters={"event_id": event_id}).status_code == 200
        )
        _validate(app, "/api/events/{event_id}/replay", "post", path_parameters={"event_id": event_id})
    statuses = {r["status"] for r in client.get("/api/events", headers=admin_headers()).get_json()["events"]}
    assert statuses >= {"queued"}
    _validate(app, "/api/events/{event_id}/replay", "post", path_parameters={"event_id": ids[0]}, query={"force": True})
    _validate(app, "/api/events/{event_id}", "get", path_parameters={"event_id": "evt_unknown"})
    waiting = client.post("/hooks/open", json={"email": "w@example.com"}).get_json()["event_id"]
    for action in ("retry", "cancel"):
        for event_id in (waiting, ids[0], "evt_unknown"):  # 200, then 409 (delivered, or cancelled), 404
            _validate(app, f"/api/events/{{event_id}}/{action}", "post", path_parameters={"event_id": event_id})
    replayed = _validate(app, "/api/events/replay", "post", query={"status": "failed", "source": "api"})
    assert replayed.status_code == 200 and replayed.json()["replayed"] >= 0
    assert _validate(app, "/api/events/replay", "post", query={"status": "queued"}).status_code == 400
    hook = _validate(
        app, "/hooks/{source}", "post", path_parameters={"source": "open"}, body={"a": 1}, media_type="application/json"
    )
    assert hook.status_code == 200
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert _validate(app, path, "get").status_code == 200


# --- property test -------------------------------------------------------------------
# schemathesis.pytest.from_fixture needs pytest's private Node._nodeid, gone in pytest 9, so each
# operation gets its own hypothesis test here, from schemathesis's strategy for it. Generated path
# parameters are mostly unknown names; half the examples use a real source or event instead.


@pytest.fixture
def seeded(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> dict[str, list[str]]:
    """Events in several states, and the names that reach them."""
    client = app.test_client()
    ids = [
        client.post("/hooks/api", json={"email": "a@example.com", "message": str(n)}, headers=api_headers()).get_json()[
            "event_id"
        ]
        for n in range(3)
    ]
    sandbox.sandbox.script(422)
    deliver_all(runtime)
    ids.append(client.post("/hooks/open", json={"email": "b@example.com"}).get_json()["event_id"])
    return {"source": ["api", "open", "contact"], "event_id": ids}


WITH_INPUT = {op for op in DOCUMENTED if "{" in op[0] or op[0] in ("/api/events", "/api/events/replay")}
CASES = [(*op, GenerationMode.POSITIVE) for op in sorted(DOCUMENTED)] + [
    (*op, GenerationMode.NEGATIVE)
    for op in sorted(WITH_INPUT)  # operations without input have no invalid input
]


@pytest.mark.parametrize(("path", "method", "mode"), CASES, ids=[f"{m} {p} {g.value}" for p, m, g in CASES])
def test_the_app_keeps_to_its_description(
    app: Flask, seeded: dict[str, list[str]], path: str, method: str, mode: GenerationMode
) -> None:
    operation = schemathesis.openapi.from_wsgi("/openapi.json", app)[path][method.upper()]
    names = [name for name in seeded if f"{{{name}}}" in path]
    real = st.sampled_from([None, *[(n, v) for n in names for v in seeded[n]]]) if names else st.just(None)

    @given(case=operation.as_strategy(generation_mode=mode), real=real)
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def keeps_to_it(case: Any, real: tuple[str, str] | None) -> None:
        if real is not None:
            case.path_parameters[real[0]] = real[1]
        headers = {**admin_headers(), **api_headers()}
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    keeps_to_it()
