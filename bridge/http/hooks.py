"""``POST /hooks/<source>``: verify -> parse -> map -> store -> answer. No business logic here."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, request
from werkzeug import Request

from bridge.errors import MappingFailed, Unauthorized, UnknownSource, Unmappable
from bridge.log import REDACTED, scrub_data
from bridge.message import InboundMessage
from bridge.metrics import ACCEPTED, DUPLICATES
from bridge.providers import PROVIDERS, Provider
from bridge.runtime import Runtime, get_runtime
from bridge.sources import Source
from bridge.store import NewEvent, OneTimeToken, ReplayedToken
from bridge.tickets import build_ticket_request

hooks = Blueprint("hooks", __name__)

# never stored or logged, whatever the kind
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")


def new_event_id() -> str:
    """Time-ordered, so that ordering by id is ordering by arrival."""
    return f"evt_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def find_source(runtime: Runtime, source_name: str) -> Source:
    source = runtime.sources.sources.get(source_name)
    if source is None:
        raise UnknownSource(f"no source named {source_name!r} in the sources file")
    return source


def read_message(source: Source, inbound: Request, verify: bool = True) -> InboundMessage:
    """A request as the source's provider reads it (shared by the hook and the previews)."""
    provider = PROVIDERS[source.kind]
    inbound.get_data(cache=True)  # raw bytes first: signatures cover them; 413 when too big
    if verify:
        provider.verify(inbound, source)
    provider.check_content_type(inbound)
    message = provider.parse(inbound, source)
    if source.secret:  # a sender that echoes our secret in its payload must not spread it
        message = InboundMessage.from_dict(scrub_data(message.to_dict(), [source.secret]))
    return message


def preview_ticket(runtime: Runtime, source: Source, inbound: Request) -> dict[str, Any]:
    """The StoreTicketRequest a hook would send for ``inbound``; the sender's secret is not checked.

    Raises the hook's own errors, or Unmappable when no ticket would be made.
    """
    message = read_message(source, inbound, verify=False)
    if message.discard_reason:
        raise Unmappable(MappingFailed("discarded", message.discard_reason), "it would be stored as discarded")
    try:
        return build_ticket_request(message, source, runtime.sources, datetime.now(UTC))
    except MappingFailed as exc:
        raise Unmappable(exc, "it would be stored as failed") from None


@hooks.post("/hooks/<source_name>")
def receive(source_name: str) -> Response:
    runtime = get_runtime()
    source = find_source(runtime, source_name)
    provider = PROVIDERS[source.kind]
    message = read_message(source, request)
    try:
        event_id, status, created = _store(runtime, source, provider, message)
    except ReplayedToken:
        raise Unauthorized("this signature was already used for another message (replayed request)") from None
    if created and status == "queued":
        runtime.wake.set()
    if created:
        ACCEPTED.labels(source.name, status).inc()
    else:
        DUPLICATES.labels(source.name).inc()
    g.event_id, g.outcome = event_id, f"{'accepted' if created else 'duplicate'} ({status})"
    return _answer(source, event_id, status, created)


def _store(runtime: Runtime, source: Source, provider: Provider, message: InboundMessage) -> tuple[str, str, bool]:
    event_id, received_at = new_event_id(), datetime.now(UTC)
    status, ticket_request, last_error = "queued", None, None
    if message.discard_reason:
        status, last_error = "discarded", f"discarded: {message.discard_reason}"
    else:
        try:
            ticket_request = build_ticket_request(message, source, runtime.sources, received_at, event_id)
        except MappingFailed as exc:
            status, last_error = "failed", str(exc)
    new = NewEvent(
        id=event_id,
        source=source.name,
        dedupe_key=message.dedupe_key,
        status=status,
        request_id=g.get("request_id"),
        raw_request=raw_request(provider, source),
        raw_body=_scrubbed_body(source),
        message=message.to_dict(),
        ticket_request=ticket_request,
        last_error=last_error,
        received_at=received_at,
    )
    token = OneTimeToken(message.replay_token, provider.token_ttl_seconds) if message.replay_token else None
    return runtime.store.add_event(new, token)


def raw_request(provider: Provider, source: Source) -> dict[str, Any]:
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


def _answer(source: Source, event_id: str, status: str, created: bool) -> Response:
    if source.redirect and not _wants_json():
        return redirect(source.redirect, code=303)  # type: ignore[return-value]
    body: dict[str, Any] = {"event_id": event_id, "status": status}
    if not created:
        body["duplicate"] = True
    return jsonify(body)


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"
