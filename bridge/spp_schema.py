"""StoreTicketRequest, field by field from SPP's "Create a ticket" page.

Every request is loaded through this schema before it is sent; unknown keys are refused,
so nothing SPP does not document ever leaves the bridge.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields


class StrictInteger(fields.Integer):
    """An integer that is really one: no strings, floats or booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictString(fields.String):
    """A str, not bytes (marshmallow decodes bytes, which would then fail JSON encoding)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _not_blank(value: str) -> None:
    # a subject of spaces is no subject (and SPP, if it trims input as Laravel apps do, refuses it)
    if not value.strip():
        raise ValidationError("Must not be blank.")


class StoreTicketRequestSchema(Schema):
    user_id = StrictInteger(required=True)
    subject = StrictString(required=True, validate=_not_blank)
    status = StrictInteger()
    employees = fields.List(StrictInteger())
    tags = fields.List(StrictString())
    order = StrictString()
    note = StrictString()
    metadata = fields.Dict(keys=StrictString(), values=StrictString())


_schema = StoreTicketRequestSchema()


def validate_ticket_request(request: dict[str, Any]) -> dict[str, list[str]]:
    """Return the field errors of ``request`` (empty when it is a valid StoreTicketRequest)."""
    try:
        _schema.load(request)
    except ValidationError as err:
        return err.normalized_messages()
    return {}
