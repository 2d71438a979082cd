"""Picking the sender, subject and body out of a submitted object (``json`` and ``form`` kinds)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from bridge.sources import Source

DEFAULT_PATHS = {
    "email": ("email",),
    "name": ("name",),
    "subject": ("subject",),
    "body": ("message", "body"),
}


class SubmittedMessageSchema(Schema):
    """The four message fields, picked out of a submitted object; each optional, each text."""

    email = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    body = fields.String(allow_none=True)


def pick_message_fields(data: dict[str, Any], source: Source) -> dict[str, Any]:
    """The raw values at the source's ``*_field`` paths (dotted for nested JSON), or the defaults."""
    picked = {}
    for role, defaults in DEFAULT_PATHS.items():
        configured = getattr(source, f"{role}_field")
        for path in (configured,) if configured else defaults:
            value = lookup(data, path)
            if value is not None:
                picked[role] = value
                break
    return picked


def lookup(data: Any, path: str) -> Any:
    if isinstance(data, dict) and path in data:
        return data[path]
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def honeypot_reason(fields: dict[str, Any], source: Source) -> str | None:
    """A source's ``honeypot: <field>`` is a field people never see: filled in, it was a bot."""
    name = source.options.get("honeypot")
    if name and str(fields.get(name) or "").strip():
        return f"spam: honeypot field {name!r} was filled in"
    return None
