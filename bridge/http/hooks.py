"""``POST /hooks/<source>``: verify -> parse -> accept -> answer. What an accepted message becomes is
decided in ``bridge/intake.py``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, request

from bridge.intake import Received, accept, find_source
from bridge.log import REDACTED
from bridge.providers import PROVIDERS, Provider
from bridge.runtime import get_runtime
from bridge.sources import Source
from bridge.status import Status

hooks = Blueprint("hooks", __name__)

# never stored or logged, whatever the kind
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")


@hooks.post("/hooks/<source_name>")
def receive(source_name: str) -> Response:
    runtime = get_runtime()
    source = find_source(runtime, source_name)
    provider = PROVIDERS[source.kind]
    message = provider.read(request, source)
    received = Received(
        g.get("request_id"),
        {**raw_request(provider), "body_bytes": len(request.get_data(cache=True))},
        _scrubbed_body(source),
        request.remote_addr,
    )
    added = accept(runtime, source, message, received)
    g.event_id, g.outcome = added.event_id, f"{'accepted' if added.created else 'duplicate'} ({added.status})"
    return _answer(source, added.event_id, added.status, added.created)


def raw_request(provider: Provider) -> dict[str, Any]:
    """Method, path, query and headers as received, credentials removed."""
    hidden = {h.lower() for h in (*CREDENTIAL_HEADERS, *provider.secret_headers)}
    headers = {k: (REDACTED if k.lower() in hidden else v) for k, v in request.headers.items()}
    query = {k: (REDACTED if k == "token" else v) for k, v in request.args.items()}
    return {"method": request.method, "path": request.path, "query": query, "headers": headers}


def _scrubbed_body(source: Source) -> bytes:
    body = request.get_data(cache=True)
    if source.secret:
        body = body.replace(source.secret.encode(), REDACTED.encode())
    return body


def _answer(source: Source, event_id: str, status: Status, created: bool) -> Response:
    if source.redirect and not _wants_json():
        return redirect(source.redirect, code=303)  # type: ignore[return-value]
    if not created and source.is_open:
        # Anyone may post here, so a duplicate answer tells nothing of the event it repeats: a
        # stranger who guessed a key must not learn an event id or follow its status
        # (docs/behaviour.md section 4).
        return jsonify({"duplicate": True})
    body: dict[str, Any] = {"event_id": event_id, "status": status}
    if not created:
        body["duplicate"] = True
    return jsonify(body)


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"
