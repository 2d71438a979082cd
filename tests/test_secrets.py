"""Secrets never reach logs, stored raw requests, error bodies or API output."""

from __future__ import annotations

import io
import json
import logging

from flask import Flask
from sqlalchemy import select

from bridge.db import events
from bridge.log import ContextFilter, SecretsFilter, configure_logging
from bridge.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, API_SECRET, SPP_TOKEN, admin_headers, deliver_all

SECRETS = (API_SECRET, SPP_TOKEN, ADMIN_TOKEN)


def capture_logs() -> tuple[io.StringIO, logging.Handler]:
    """A handler with the bridge's own filters, on the root logger."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s %(request_id)s"))
    handler.filters = [ContextFilter(), SecretsFilter(SECRETS)]
    logging.getLogger().addHandler(handler)
    return out, handler


def test_secrets_absent_from_storage_logs_and_api(app: Flask, runtime: Runtime, sandbox) -> None:
    out, handler = capture_logs()
    try:
        client = app.test_client()
        body = {"email": "alice@example.com", "subject": f"token {API_SECRET}", "message": f"echo {API_SECRET}"}
        ok = client.post(
            f"/hooks/api?token={API_SECRET}",
            json=body,
            headers={"X-Bridge-Token": API_SECRET, "Authorization": f"Bearer {ADMIN_TOKEN}", "Cookie": "s=1"},
        )
        assert ok.status_code == 200
        denied = client.post("/hooks/api", json=body, headers={"X-Bridge-Token": API_SECRET[:-1]})
        assert denied.status_code == 401
        sandbox.sandbox.script(503)
        deliver_all(runtime)
        logging.getLogger("bridge.test").warning("a careless line: %s %s", SPP_TOKEN, ADMIN_TOKEN)
        detail = client.get(f"/api/events/{ok.get_json()['event_id']}", headers=admin_headers())
        listing = client.get("/api/events", headers=admin_headers())
    finally:
        logging.getLogger().removeHandler(handler)

    with runtime.store.engine.connect() as conn:
        [row] = conn.execute(select(events)).mappings().all()
    stored = json.dumps(row["raw_request"]) + row["raw_body"].decode() + json.dumps(row["message"])
    stored += json.dumps(row["ticket_request"])
    outputs = {
        "stored": stored,
        "logs": out.getvalue(),
        "error body": denied.get_data(as_text=True),
        "detail": detail.get_data(as_text=True),
        "list": listing.get_data(as_text=True),
        "sent to SPP": json.dumps(sandbox.sandbox.tickets),
    }
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret reached {where}"
    assert "[REDACTED]" in out.getvalue()
    assert row["raw_request"]["headers"]["X-Bridge-Token"] == "[REDACTED]"
    assert row["raw_request"]["headers"]["Authorization"] == "[REDACTED]"
    assert row["raw_request"]["query"] == {"token": "[REDACTED]"}
    assert row["message"]["subject"] == "token [REDACTED]"


def test_configure_logging_is_idempotent() -> None:
    configure_logging(["one-secret"])
    configure_logging(["two-secret"])
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_bridge", False)]
    assert len(ours) == 1
    [_, secrets] = ours[0].filters
    assert isinstance(secrets, SecretsFilter) and secrets.secrets == ["two-secret"]
