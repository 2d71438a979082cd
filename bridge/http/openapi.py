"""/openapi.json, generated with apispec from the same marshmallow schemas the API dumps with."""

from __future__ import annotations

from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from bridge.http import schemas
from bridge.providers import PROVIDERS
from bridge.spp_schema import StoreTicketRequestSchema
from bridge.version import __version__


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


ADMIN_ERRORS = {
    "401": _error("missing or wrong bearer token"),
    "404": _error("not found, or no admin token set"),
    "503": _error("database unavailable"),
}
EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _reject_responses() -> dict[str, Any]:
    """Each kind's ``reject_status`` (what its sender reads as "rejected, do not retry"), naming its kinds."""
    kinds: dict[int, list[str]] = {}
    for kind, provider in sorted(PROVIDERS.items()):
        kinds.setdefault(provider.reject_status, []).append(kind)
    return {
        str(status): _error(f"parsed, but lacks what the kind requires: rejected, do not retry ({', '.join(names)})")
        for status, names in kinds.items()
    }


HOOK_RESPONSES = dict(
    sorted(
        {
            "200": _json("Accepted", "stored and queued, or a duplicate of an earlier request"),
            "303": {"description": "form source with a redirect, browser request"},
            "400": _error("body that cannot be parsed"),
            "401": _error("bad or missing secret or signature"),
            "404": _error("unknown source"),
            "413": _error("body over BRIDGE_MAX_BODY_BYTES or the source's max_body_bytes"),
            "415": _error("content type the kind does not take"),
            "429": _error("over the source's rate_limit for this sender; nothing stored; retry after Retry-After"),
            "503": _error("database unavailable; retry"),
            **_reject_responses(),
        }.items()
    )
)

# bodies a kind reads as fields; any other content type a kind takes (a raw message) is text
STRUCTURED = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


def _hook_body() -> dict[str, Any]:
    """Every content type some kind accepts, from the registry."""
    accepted = dict.fromkeys(content_type for provider in PROVIDERS.values() for content_type in provider.content_types)
    content = {ct: {"schema": {"type": "object" if ct in STRUCTURED else "string"}} for ct in accepted}
    return {"required": True, "content": content}


HOOK_BODY = _hook_body()

PATHS: dict[str, dict[str, Any]] = {
    "/hooks/{source}": {
        "post": {
            "summary": "Receive a webhook for a configured source",
            "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": HOOK_BODY,
            "responses": HOOK_RESPONSES,
        }
    },
    "/api/events": {
        "get": {
            "summary": "Events, newest first",
            "security": [{"bearer": []}],
            "parameters": [{"in": "query", "schema": schemas.EventListQuerySchema}],
            "responses": {"200": _json("EventList", "a page of events"), "400": _error("bad query"), **ADMIN_ERRORS},
        }
    },
    "/api/events/{event_id}": {
        "get": {
            "summary": "One event with its ticket request and attempts",
            "security": [{"bearer": []}],
            "parameters": [EVENT_ID],
            "responses": {"200": _json("EventDetail", "the event"), **ADMIN_ERRORS},
        }
    },
    "/api/events/{event_id}/replay": {
        "post": {
            "summary": "Map a failed or discarded event again and queue it (force: a delivered one too)",
            "security": [{"bearer": []}],
            "parameters": [EVENT_ID, {"in": "query", "schema": schemas.ReplayQuerySchema}],
            "responses": {
                "200": _json("Replayed", "queued again"),
                "400": _error("bad query"),
                "409": _error("the event is not in a replayable state"),
                "422": _error("the event still cannot be mapped to a ticket"),
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/events/{event_id}/retry": {
        "post": {
            "summary": "Make a queued or retrying event due now (while delivery is paused it still waits for the "
            "pause to end); the attempt counts towards the retry budget like any other",
            "security": [{"bearer": []}],
            "parameters": [EVENT_ID],
            "responses": {
                "200": _json("Retried", "due now"),
                "409": _error("the event is not queued or retrying (or a worker is delivering it)"),
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/events/{event_id}/cancel": {
        "post": {
            "summary": "Stop a queued or retrying event: it becomes failed, last_error 'cancelled by the operator'; "
            "replay brings it back",
            "security": [{"bearer": []}],
            "parameters": [EVENT_ID],
            "responses": {
                "200": _json("EventState", "failed"),
                "409": _error("the event is not queued or retrying (or a worker is delivering it)"),
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/events/replay": {
        "post": {
            "summary": "Replay every failed event matching the filter, one at a time",
            "security": [{"bearer": []}],
            "parameters": [{"in": "query", "schema": schemas.BulkReplayQuerySchema}],
            "responses": {
                "200": _json("BulkReplayed", "how many were queued again, and how many were not"),
                "400": _error("bad query (a status other than failed, a since that is not ISO 8601)"),
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/preview/{source}": {
        "post": {
            "summary": "The StoreTicketRequest /hooks/{source} would send for this input (stores and sends nothing; "
            "the sender's own secret is not checked)",
            "security": [{"bearer": []}],
            "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": HOOK_BODY,
            "responses": {
                "200": _json("StoreTicketRequest", "the request it would send (without metadata.bridge_event_id)"),
                "400": _error("body that cannot be parsed"),
                "413": _error("body over BRIDGE_MAX_BODY_BYTES or the source's max_body_bytes"),
                "415": _error("content type the kind does not take"),
                "422": _error("it would be stored as failed or discarded, or lacks what the kind requires"),
                **ADMIN_ERRORS,
            },
        }
    },
    "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("Health", "running")}}},
    "/readyz": {
        "get": {
            "summary": "Readiness: the database answers",
            "responses": {"200": _json("Health", "ready"), "503": _error("database unavailable")},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **ADMIN_ERRORS,
            },
        }
    },
    "/openapi.json": {"get": {"summary": "This description", "responses": {"200": {"description": "OpenAPI 3"}}}},
}

# Nested schemas come before the schemas that nest them: the marshmallow plugin registers
# a nested schema on first sight under its own name, and a second registration is an error.
SCHEMAS = {
    "Error": schemas.ErrorSchema,
    "Accepted": schemas.AcceptedSchema,
    "StoreTicketRequest": StoreTicketRequestSchema,
    "Attempt": schemas.AttemptSchema,
    "EventSummary": schemas.EventSummarySchema,
    "EventDetail": schemas.EventDetailSchema,
    "EventList": schemas.EventListSchema,
    "Replayed": schemas.ReplayedSchema,
    "EventState": schemas.EventStateSchema,
    "Retried": schemas.RetriedSchema,
    "BulkReplayed": schemas.BulkReplayedSchema,
    "Health": schemas.HealthSchema,
}


@cache
def openapi_spec() -> dict[str, Any]:
    spec = APISpec(
        title="spp-ticket-bridge",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Webhooks in, Service Provider Pro tickets out."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    for path, operations in PATHS.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
