"""The admin API (docs/behaviour.md section 6): events, event detail, replay, retry now, cancel, bulk
replay, preview. Bearer BRIDGE_ADMIN_TOKEN."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import NotFound

from bridge.errors import BridgeError, Unauthorized, UnknownEvent
from bridge.event_actions import cancel, retry_now
from bridge.http import throttle
from bridge.http.schemas import (
    BulkReplayedSchema,
    BulkReplayQuerySchema,
    EventDetailSchema,
    EventListQuerySchema,
    EventListSchema,
    EventStateSchema,
    PreviewQuerySchema,
    ReplayedSchema,
    ReplayQuerySchema,
    RetriedSchema,
)
from bridge.intake import find_source, preview, preview_calls
from bridge.replay import plausible_event_id, replay_event, replay_failed
from bridge.runtime import get_runtime

admin_api = Blueprint("admin_api", __name__, url_prefix="/api")


class BadQuery(BridgeError):
    status = 400
    code = "bad_query"


@admin_api.before_request
def require_admin_token() -> None:
    check_admin_token(get_runtime().settings.admin_token)


def check_admin_token(expected: str | None) -> None:
    """No token configured: the admin surface does not exist (404). Otherwise bearer, constant time;
    wrong ones are counted per client address (``bridge/http/throttle.py``)."""
    if not expected:
        raise NotFound()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("missing or wrong bearer token (BRIDGE_ADMIN_TOKEN)")
    failures = throttle.check_allowed()
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        throttle.failed()
        raise Unauthorized("missing or wrong bearer token (BRIDGE_ADMIN_TOKEN)")
    throttle.succeeded(failures)


def _query(schema: Schema) -> dict[str, Any]:
    try:
        return schema.load(request.args.to_dict())
    except ValidationError as err:
        raise BadQuery(f"invalid query: {err.normalized_messages()}") from None


@admin_api.post("/preview/<source_name>")
def preview_source(source_name: str) -> Response:
    """What /hooks/<source> would send to SPP for this request; stores nothing, sends nothing.

    The admin token authorizes the call, so the sender's own secret or signature is not checked.
    """
    runtime = get_runtime()
    source = find_source(runtime, source_name)
    if _query(PreviewQuerySchema())["calls"]:
        return jsonify(preview_calls(runtime, source, request))
    return jsonify(preview(runtime, source, request))


@admin_api.get("/events")
def list_events() -> Response:
    args = _query(EventListQuerySchema())
    rows, cursor = get_runtime().store.queries.list_events(
        args.get("status"), args.get("source"), args["limit"], args.get("cursor")
    )
    return jsonify(EventListSchema().dump({"events": rows, "next_cursor": cursor}))


@admin_api.get("/events/<event_id>")
def event_detail(event_id: str) -> Response:
    queries = get_runtime().store.queries
    event = queries.get_event(event_id) if plausible_event_id(event_id) else None
    if event is None:
        raise UnknownEvent(f"no event {event_id!r}")
    event["attempt_log"] = queries.list_attempts(event_id)
    return jsonify(EventDetailSchema().dump(event))


@admin_api.post("/events/<event_id>/replay")
def replay(event_id: str) -> Response:
    force = _query(ReplayQuerySchema())["force"]
    status = replay_event(get_runtime(), event_id, force=force)
    return jsonify(ReplayedSchema().dump({"event_id": event_id, "status": status}))


@admin_api.post("/events/<event_id>/retry")
def retry(event_id: str) -> Response:
    """A queued or retrying event becomes due now (409 in any other state)."""
    retried = retry_now(get_runtime(), event_id)
    body = {"event_id": event_id, "status": retried.status, "delivery_paused": retried.delivery_paused}
    return jsonify(RetriedSchema().dump(body))


@admin_api.post("/events/<event_id>/cancel")
def cancel_event(event_id: str) -> Response:
    """A queued or retrying event becomes failed, "cancelled by the operator" (409 in any other state)."""
    status = cancel(get_runtime(), event_id)
    return jsonify(EventStateSchema().dump({"event_id": event_id, "status": status}))


@admin_api.post("/events/replay")
def replay_many() -> Response:
    """Replay every failed event of the filter, each in a transaction of its own."""
    args = _query(BulkReplayQuerySchema())
    done = replay_failed(get_runtime(), args.get("source"), args.get("since"), args.get("q"))
    return jsonify(BulkReplayedSchema().dump({"replayed": done.replayed, "not_replayed": done.not_replayed}))
