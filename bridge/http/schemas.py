"""marshmallow schemas of what the HTTP API answers; they also generate /openapi.json."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate

from bridge.spp_schema import StoreTicketRequestSchema
from bridge.status import AttemptOutcome, ClientHow, Status, Step

STATUSES = tuple(Status)


class ErrorSchema(Schema):
    error = fields.String(required=True)
    message = fields.String(required=True)


class AcceptedSchema(Schema):
    """``event_id`` and ``status`` are always there, except in a duplicate's answer on a source
    without a secret, which is ``{"duplicate": true}`` alone."""

    event_id = fields.String(metadata={"description": "absent in a duplicate's answer on a source without a secret"})
    status = fields.String(
        validate=validate.OneOf(STATUSES),
        metadata={"description": "absent in a duplicate's answer on a source without a secret"},
    )
    duplicate = fields.Boolean()


class EventSummarySchema(Schema):
    id = fields.String(required=True)
    source = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    ticket_id = fields.Integer(allow_none=True)
    attempts = fields.Integer(required=True, metadata={"description": "requests sent to SPP so far"})
    last_error = fields.String(allow_none=True)
    spp_request_id = fields.String(allow_none=True)
    received_at = fields.AwareDateTime(required=True)
    delivered_at = fields.AwareDateTime(allow_none=True)
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    spp_message_id = fields.Integer(allow_none=True, metadata={"description": "the ticket's first message"})
    client_id = fields.Integer(allow_none=True, metadata={"description": "the SPP client the ticket belongs to"})
    client_how = fields.String(
        allow_none=True,
        validate=validate.OneOf(tuple(ClientHow)),
        metadata={"description": "mapped (sources file), found or created in SPP, or default"},
    )
    thread_of = fields.String(
        allow_none=True, metadata={"description": "the earlier event whose ticket this email reply joined"}
    )


class AttemptSchema(Schema):
    number = fields.Integer(required=True)
    step = fields.String(required=True, validate=validate.OneOf(tuple(Step)))
    started_at = fields.AwareDateTime(required=True)
    duration_ms = fields.Integer(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(tuple(AttemptOutcome)))
    http_status = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    ambiguous = fields.Boolean(required=True)
    ticket_id = fields.Integer(allow_none=True)
    spp_request_id = fields.String(allow_none=True)
    response_excerpt = fields.String(allow_none=True)
    client_id = fields.Integer(allow_none=True)
    message_id = fields.Integer(allow_none=True)


class EventDetailSchema(EventSummarySchema):
    ticket_request = fields.Nested(StoreTicketRequestSchema, allow_none=True)
    message = fields.Dict(allow_none=True, metadata={"description": "the normalized inbound message"})
    request_id = fields.String(allow_none=True)
    plan = fields.Dict(
        allow_none=True,
        metadata={"description": "what delivery does besides the ticket: client look-up, message and files, reply"},
    )
    attempt_log = fields.List(fields.Nested(AttemptSchema), metadata={"description": "one entry per attempt"})
    purged_at = fields.AwareDateTime(
        allow_none=True,
        metadata={
            "description": "when retention deleted the event's request, message, ticket request, plan and files"
            " (BRIDGE_RETENTION_DAYS); null while they are kept"
        },
    )


class EventListSchema(Schema):
    events = fields.List(fields.Nested(EventSummarySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


# PostgreSQL text cannot hold NUL, and no id or source name holds a control character:
# refuse them here (400) rather than let the database refuse them (500).
class _FullMatch(validate.Validator):
    """A pattern whose ``$`` means the end of the string, as in JSON Schema (Python's admits a final newline).

    apispec copies ``regex.pattern`` into the OpenAPI ``pattern``.
    """

    def __init__(self, pattern: str, error: str) -> None:
        self.regex = re.compile(pattern)
        self.message = error

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self.message)
        return value


NO_CONTROL_CHARACTERS = _FullMatch(r"^[^\x00-\x1f\x7f]*$", error="must not contain control characters")


class EventListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    source = fields.String(validate=[validate.Length(max=100), NO_CONTROL_CHARACTERS])
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=[validate.Length(max=40), NO_CONTROL_CHARACTERS])


class ReplayQuerySchema(Schema):
    force = fields.Boolean(load_default=False)


class PreviewQuerySchema(Schema):
    calls = fields.Boolean(
        load_default=False,
        metadata={
            "description": "answer every request delivery would make (client, ticket, message), not the ticket alone"
        },
    )


class EventStateSchema(Schema):
    """The answer of ``cancel``: the event and its new status."""

    event_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


class ReplayedSchema(EventStateSchema):
    """The answer of ``replay``: the event and its new status."""


class RetriedSchema(EventStateSchema):
    delivery_paused = fields.Boolean(
        required=True,
        metadata={
            "description": "SPP refuses the API token: the event is due, but goes out only once delivery resumes"
        },
    )


class BulkReplayQuerySchema(Schema):
    """An empty parameter (``source=``) is no filter."""

    status = fields.String(
        load_default=Status.FAILED,
        validate=validate.OneOf([Status.FAILED], error="only failed events are replayed in bulk"),
    )
    source = fields.String(validate=[validate.Length(max=100), NO_CONTROL_CHARACTERS])
    since = fields.AwareDateTime(
        default_timezone=UTC,
        metadata={"description": "ISO 8601; received at or after; without a zone, UTC"},
    )
    q = fields.String(
        validate=[validate.Length(max=200), NO_CONTROL_CHARACTERS],
        metadata={"description": "the sender (name or address) or the subject contains this, any case"},
    )

    @pre_load
    def _drop_empty(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value != ""}

    @post_load
    def _in_utc(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "since" in data:
            try:
                data["since"] = data["since"].astimezone(UTC)
            except OverflowError:
                raise ValidationError("out of range", "since") from None
        return data


class BulkReplayedSchema(Schema):
    replayed = fields.Integer(required=True, metadata={"description": "failed events queued again"})
    not_replayed = fields.Integer(
        required=True,
        metadata={"description": "matching failed events left failed: they still cannot be mapped, or changed state"},
    )


class HealthSchema(Schema):
    status = fields.String(required=True)
