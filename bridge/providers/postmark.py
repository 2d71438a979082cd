"""``postmark``: Postmark's inbound webhook (one JSON document per received email).

Postmark has no signature: the credentials are HTTP Basic, written into the webhook URL
(``https://user:pass@<bridge>/hooks/<source>``) and configured here as ``secret: user:pass``.
The de-duplication key is Postmark's own ``MessageID`` (a UUID that its retries repeat).

Postmark counts only exactly ``200`` as delivered and retries anything else, except ``403``,
which stops its retries at once: that is this kind's answer for a payload that parses but
is no inbound message (no ``MessageID``, no sender, another record type).
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields
from werkzeug import Request

from bridge.errors import RejectedPayload
from bridge.message import Attachment, InboundMessage
from bridge.providers import mime
from bridge.providers.base import BasicAuth, Provider, bounded_key
from bridge.sources import Source


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


def _text() -> fields.String:
    # Postmark sends "" for an empty value; a missing key or null is read the same way
    return fields.String(load_default="", allow_none=True)


class _Posted(Schema):
    class Meta:
        unknown = EXCLUDE  # Postmark adds fields over time; RawEmail (the whole MIME message) is dropped


class _Address(_Posted):
    Email = _text()
    Name = _text()
    MailboxHash = _text()


class _Header(_Posted):
    Name = fields.String(required=True)
    Value = _text()


class _Attachment(_Posted):
    Name = _text()
    ContentType = _text()
    ContentLength = fields.Integer(strict=True, allow_none=True, load_default=None)
    ContentID = _text()
    # read only to size an attachment whose ContentLength is missing; never kept
    Content = _text()
    Data = _text()  # the dashboard's "Check" button posts Data instead of Content


class PostmarkInboundSchema(_Posted):
    MessageID = fields.String(required=True, validate=_not_blank)
    From = _text()
    FromName = _text()
    FromFull = fields.Nested(_Address, allow_none=True, load_default=None)
    To = _text()
    ToFull = fields.List(fields.Nested(_Address), allow_none=True, load_default=list)
    Cc = _text()
    CcFull = fields.List(fields.Nested(_Address), allow_none=True, load_default=list)
    Bcc = _text()
    BccFull = fields.List(fields.Nested(_Address), allow_none=True, load_default=list)
    ReplyTo = _text()
    OriginalRecipient = _text()
    Subject = _text()
    Date = _text()
    MailboxHash = _text()
    Tag = _text()
    MessageStream = _text()
    TextBody = _text()
    HtmlBody = _text()
    StrippedTextReply = _text()  # kept in fields for templates; the note uses the full TextBody
    Headers = fields.List(fields.Nested(_Header), allow_none=True, load_default=list)
    Attachments = fields.List(fields.Nested(_Attachment), allow_none=True, load_default=list)


class PostmarkProvider(BasicAuth, Provider):
    kind = "postmark"
    sender_setup = (
        "Postmark > Servers > Inbound stream > Settings: Webhook URL {url} with the secret's user:pass before the host"
    )
    content_types = ("application/json",)
    reject_status = 403  # Postmark: "403 stops retries"; anything else but 200 is retried

    def parse(self, request: Request, source: Source) -> InboundMessage:
        data = self.json_object(request)
        record_type = data.get("RecordType", "Inbound")
        if record_type != "Inbound":  # a delivery/bounce/open webhook pointed at the inbound URL
            raise RejectedPayload(
                f"this is a Postmark {str(record_type)[:40]!r} webhook, not an inbound message: "
                "point only the inbound stream's webhook at this URL",
                status=self.reject_status,
            )
        post = self.load(PostmarkInboundSchema, data)
        headers = mime.header_dict((h["Name"], h["Value"] or "") for h in post["Headers"] or [])
        name, email = _sender(post)
        discard = mime.auto_reply_reason({**headers, "from": email or ""})
        if not email and not discard:
            raise RejectedPayload("the message has no sender address (FromFull.Email)", status=self.reject_status)
        attachments = [_attachment(a) for a in post["Attachments"] or []]
        text, html = mime.newlines(post["TextBody"] or "").strip(), post["HtmlBody"] or None
        if not text and html:
            text = mime.html_to_text(html)
        return InboundMessage(
            dedupe_key=bounded_key("postmark:", post["MessageID"].strip()),
            email=email,
            name=name,
            subject=mime.decode_words(post["Subject"] or "") or None,
            body=text,
            html=html,
            fields=_fields(post, attachments, headers),
            attachments=attachments,
            message_id=mime.clean_message_id(headers.get("message-id")) or post["MessageID"].strip(),
            discard_reason=discard,
        )


def _sender(post: dict[str, Any]) -> tuple[str | None, str | None]:
    full = post["FromFull"] or {}
    address = (full.get("Email") or "").strip().lower()
    fallback_name, fallback_address = mime.sender(post["From"] or "")
    name = mime.decode_words(full.get("Name") or post["FromName"] or "") or fallback_name
    return name or None, (address if "@" in address else fallback_address)


def _attachment(posted: dict[str, Any]) -> Attachment:
    size = posted["ContentLength"]
    if size is None or size < 0:  # the "Check" button leaves it out: size the base64 content instead
        encoded = (posted["Content"] or posted["Data"] or "").strip()
        size = max(len(encoded) * 3 // 4 - encoded[-2:].count("="), 0)
    return Attachment(name=posted["Name"] or "unnamed", content_type=posted["ContentType"] or "", size=size)


def _fields(post: dict[str, Any], attachments: list[Attachment], headers: dict[str, str]) -> dict[str, Any]:
    """What Postmark posted, under its own names, without attachment content; plus ``headers`` by lower-case name."""
    listed = [
        {"Name": a.name, "ContentType": a.content_type, "ContentLength": a.size, "ContentID": p["ContentID"] or ""}
        for a, p in zip(attachments, post["Attachments"] or [], strict=True)
    ]
    return {**post, "Attachments": listed, "headers": headers}
