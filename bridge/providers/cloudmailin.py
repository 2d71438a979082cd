"""``cloudmailin``: CloudMailin's JSON (Normalized) format.

CloudMailin posts ``application/json`` while the sending server is still connected: our 2xx
accepts the mail, a 4xx makes CloudMailin refuse it (the sender gets a bounce), a 5xx makes
it tell the sending server to try again later. So a message we cannot take is answered 422
only when retrying cannot help; a database outage is 503 (the HTTP layer's answer).

``headers`` holds the message headers under lower-case, underscored names (``message_id``,
``auto_submitted``); a header that occurs more than once is a list. Credentials are HTTP
Basic, put in the target URL (``secret: user:pass``); the signed-request scheme CloudMailin
documents belongs to its deprecated original format and is not used here.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields
from werkzeug import Request

from bridge.message import Attachment, InboundMessage
from bridge.providers.base import BasicAuth, Provider
from bridge.providers.mime import (
    MAX_ATTACHMENTS,
    MAX_HEADERS,
    ParsedEmail,
    auto_reply_reason,
    base64_size,
    clean_message_id,
    decode_words,
    email_message,
    html_to_text,
    kept_headers,
    more_attachments,
    posted_attachment,
    sender,
)
from bridge.sources import Source


class HeaderValues(fields.Field):
    """A header object: each value a string, or a list of strings for a repeated header.

    Within the limits of a parsed message: the first MAX_HEADERS names (then the ones the bridge
    reads), and of a repeated header its first MAX_HEADERS values."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, str | list[str]]:
        if not isinstance(value, dict):
            raise ValidationError("must be an object of header names to values")
        result: dict[str, str | list[str]] = {}
        # CloudMailin's names are underscored (message_id): kept_headers compares them as mail names
        for name, item in kept_headers(value.items(), lambda pair: str(pair[0]).replace("_", "-")):
            if isinstance(item, list):
                result[str(name)] = [str(v) for v in item[:MAX_HEADERS] if isinstance(v, (str, int, float))]
            elif isinstance(item, (str, int, float)) and not isinstance(item, bool):
                result[str(name)] = str(item)
        return result


class AttachmentSchema(Schema):
    """One attachment: ``content`` (base64) when embedded, ``url`` when an attachment store holds it."""

    class Meta:
        unknown = INCLUDE

    file_name = fields.String(allow_none=True, load_default=None)
    content_type = fields.String(allow_none=True, load_default=None)
    size = fields.Raw(load_default=None)  # used when it is a whole number, else computed from content
    content = fields.String(allow_none=True, load_default=None)
    url = fields.String(allow_none=True, load_default=None)
    disposition = fields.String(allow_none=True, load_default=None)


class EnvelopeSchema(Schema):
    class Meta:
        unknown = INCLUDE

    from_ = fields.String(data_key="from", allow_none=True, load_default=None)  # "" for a bounce
    to = fields.String(allow_none=True, load_default=None)


class NormalizedSchema(Schema):
    """The JSON (Normalized) post; only ``headers`` is required, every body part may be missing."""

    class Meta:
        unknown = INCLUDE

    headers = HeaderValues(required=True)
    envelope = fields.Nested(EnvelopeSchema, load_default=dict)
    plain = fields.String(allow_none=True, load_default=None)
    html = fields.String(allow_none=True, load_default=None)
    reply_plain = fields.String(allow_none=True, load_default=None)
    attachments = fields.List(fields.Nested(AttachmentSchema), allow_none=True, load_default=list)


class CloudMailinProvider(BasicAuth, Provider):
    kind = "cloudmailin"
    threads = True
    sender_setup = "CloudMailin: target {url} with the secret's user:pass before the host, format JSON (Normalized)"
    content_types = ("application/json",)
    sample = (
        "application/json",
        '{"envelope": {"from": "alice@example.com", "to": "support@example.com"},\n'
        ' "headers": {"from": "Alice Müller <alice@example.com>", "subject": "Hello",\n'
        '  "message_id": "<sample-1@example.com>"},\n'
        ' "plain": "Hi there, Grüße aus Köln"}',
    )

    def parse(self, request: Request, source: Source) -> InboundMessage:
        data = self.json_object(request)
        posted_attachments = data.get("attachments")
        unlisted: list[Any] = []
        if isinstance(posted_attachments, list):  # cut before the schema loads them: 50,000 take seconds
            unlisted = posted_attachments[MAX_ATTACHMENTS:]
            data = {**data, "attachments": posted_attachments[:MAX_ATTACHMENTS]}
        posted = self.load(NormalizedSchema, data)
        email = normalized_email(posted, unlisted)
        return email_message(
            email,
            fields=template_fields(data),
            discard_reason=auto_reply_reason(email.headers, posted["envelope"].get("from_")),
            reject_status=self.reject_status,
        )


def normalized_email(posted: dict[str, Any], unlisted: list[Any] | None = None) -> ParsedEmail:
    """The message of a loaded post; ``unlisted``: the attachments past MAX_ATTACHMENTS, as posted."""
    headers = mail_headers(posted["headers"])
    name, address = sender(headers.get("from", ""))
    if not address:
        address = sender(posted["envelope"].get("from_") or "")[1]
    # the full text, quoted reply included (reply_plain, the new part only, stays in fields)
    text, html = (posted["plain"] or "").strip(), posted["html"] or None
    return ParsedEmail(
        from_name=name,
        from_email=address,
        subject=decode_words(headers.get("subject", "")) or None,
        text=text or (html_to_text(html) if html else ""),
        html=html,
        message_id=clean_message_id(headers.get("message-id")),
        headers=headers,
        attachments=[attachment(a) for a in posted["attachments"] or []]
        + ([more_attachments(len(unlisted), sum(map(_unlisted_size, unlisted)))] if unlisted else []),
    )


def mail_headers(posted: dict[str, str | list[str]]) -> dict[str, str]:
    """Header names back in mail form (``auto_submitted`` -> ``auto-submitted``), first value of a list."""
    result: dict[str, str] = {}
    for name, value in posted.items():
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, str):
            result.setdefault(name.lower().replace("_", "-"), first)
    return result


def attachment(posted: dict[str, Any]) -> Attachment:
    """One attachment with its bytes (``content``), or its link when an attachment store holds it."""
    size = posted["size"]
    return posted_attachment(
        name=posted["file_name"] or "",
        content_type=posted["content_type"] or "application/octet-stream",
        encoded=posted["content"],
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        url=posted["url"],
    )


def _unlisted_size(posted: Any) -> int:
    """An attachment past the limit, as posted (not loaded): its size, else its content's."""
    if not isinstance(posted, dict):
        return 0
    size = posted.get("size")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        return size
    return base64_size(posted["content"]) if isinstance(posted.get("content"), str) else 0


def template_fields(data: dict[str, Any]) -> dict[str, Any]:
    """What was posted, minus the bodies (``plain``, ``html``) and the attachments' content."""
    found = {key: value for key, value in data.items() if key not in ("plain", "html", "attachments")}
    if isinstance(data.get("attachments"), list):
        found["attachments"] = [
            {k: v for k, v in a.items() if k != "content"} if isinstance(a, dict) else a for a in data["attachments"]
        ]
    return found
