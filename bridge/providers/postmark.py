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

from marshmallow import ValidationError, fields
from werkzeug import Request

from bridge.errors import RejectedPayload
from bridge.message import Attachment, InboundMessage
from bridge.providers import mime
from bridge.providers.base import BasicAuth, LenientSchema, Provider, bounded_key
from bridge.sources import Source


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


def _text() -> fields.String:
    # Postmark sends "" for an empty value; a missing key or null is read the same way
    return fields.String(load_default="", allow_none=True)


class _Address(LenientSchema):
    Email = _text()
    Name = _text()
    MailboxHash = _text()


class _Header(LenientSchema):
    Name = fields.String(required=True)
    Value = _text()


class _Attachment(LenientSchema):
    Name = _text()
    ContentType = _text()
    ContentLength = fields.Integer(strict=True, allow_none=True, load_default=None)
    ContentID = _text()
    # base64: decoded into the attachment's bytes, never kept in fields
    Content = _text()
    Data = _text()  # the dashboard's "Check" button posts Data instead of Content


class PostmarkInboundSchema(LenientSchema):
    """The inbound webhook's fields; RawEmail (the whole MIME message, when enabled) is dropped."""

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
    threads = True
    sender_setup = (
        "Postmark > Servers > Inbound stream > Settings: Webhook URL {url} with the secret's user:pass before the host"
    )
    content_types = ("application/json",)
    reject_status = 403  # Postmark: "403 stops retries"; anything else but 200 is retried
    sample = (
        "application/json",
        '{"MessageID": "5b0d1e57-0000-4000-8000-000000000001", "From": "alice@example.com",\n'
        ' "FromName": "Alice Müller", "To": "support@inbound.postmarkapp.com", "Subject": "Hello",\n'
        ' "TextBody": "Hi there, Grüße aus Köln",\n'
        ' "Headers": [{"Name": "Message-ID", "Value": "<sample-1@example.com>"}]}',
    )

    def parse(self, request: Request, source: Source) -> InboundMessage:
        data = self.json_object(request)
        record_type = data.get("RecordType", "Inbound")
        if record_type != "Inbound":  # a delivery/bounce/open webhook pointed at the inbound URL
            raise RejectedPayload(
                f"this is a Postmark {str(record_type)[:40]!r} webhook, not an inbound message: "
                "point only the inbound stream's webhook at this URL",
                status=self.reject_status,
            )
        data, unlisted = _within_limits(data)
        post = self.load(PostmarkInboundSchema, data)
        headers = mime.header_dict((h["Name"], h["Value"] or "") for h in post["Headers"] or [])
        name, address = _sender(post)
        attachments = [_attachment(a) for a in post["Attachments"] or []]
        more = [mime.more_attachments(len(unlisted), sum(map(_unlisted_size, unlisted)))] if unlisted else []
        text, html = (post["TextBody"] or "").strip(), post["HtmlBody"] or None
        email = mime.ParsedEmail(
            from_name=name,
            from_email=address,
            subject=mime.decode_words(post["Subject"] or "") or None,
            text=text or (mime.html_to_text(html) if html else ""),
            html=html,
            message_id=mime.clean_message_id(headers.get("message-id")) or post["MessageID"].strip(),
            headers=headers,
            attachments=attachments + more,
        )
        return mime.email_message(
            email,
            fields=_fields(post, attachments, headers),
            discard_reason=mime.auto_reply_reason({**headers, "from": address or ""}),
            reject_status=self.reject_status,
            refuse=_refusal,
            dedupe_key=bounded_key("postmark:", post["MessageID"].strip()),
        )


def _within_limits(data: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The post with its lists cut to what the bridge reads (docs/providers.md, "Limits on what is
    read of a message") before the schema loads them, which for 50,000 attachments takes seconds;
    and the attachments past MAX_ATTACHMENTS, to be counted."""
    bounded, unlisted = dict(data), []
    if isinstance(data.get("Headers"), list):
        bounded["Headers"] = mime.kept_headers(data["Headers"], lambda h: h.get("Name") if isinstance(h, dict) else "")
    for key in ("ToFull", "CcFull", "BccFull"):
        if isinstance(data.get(key), list):
            bounded[key] = data[key][: mime.MAX_ADDRESSES]
    posted = data.get("Attachments")
    if isinstance(posted, list):
        bounded["Attachments"], unlisted = posted[: mime.MAX_ATTACHMENTS], posted[mime.MAX_ATTACHMENTS :]
    return bounded, unlisted


def _unlisted_size(posted: Any) -> int:
    """An attachment past the limit, as posted (not loaded): its ContentLength, else its content's size."""
    if not isinstance(posted, dict):
        return 0
    size = posted.get("ContentLength")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        return size
    content = posted.get("Content") or posted.get("Data")
    return mime.base64_size(content) if isinstance(content, str) else 0


def _refusal(email: mime.ParsedEmail, discard_reason: str | None) -> str | None:
    """A mail to answer needs a sender address; automatic mail is stored as discarded without one."""
    return None if email.from_email or discard_reason else "the message has no sender address (FromFull.Email)"


def _sender(post: dict[str, Any]) -> tuple[str | None, str | None]:
    full = post["FromFull"] or {}
    address = (full.get("Email") or "").strip().lower()
    fallback_name, fallback_address = mime.sender(post["From"] or "")
    name = mime.decode_words(full.get("Name") or post["FromName"] or "") or fallback_name
    return name or None, (address if "@" in address else fallback_address)


def _attachment(posted: dict[str, Any]) -> Attachment:
    size = posted["ContentLength"]
    return mime.posted_attachment(
        name=posted["Name"] or "",
        content_type=posted["ContentType"] or "",
        encoded=posted["Content"] or posted["Data"],  # the dashboard's "Check" button posts Data
        size=size if size is not None and size >= 0 else None,
    )


def _fields(post: dict[str, Any], attachments: list[Attachment], headers: dict[str, str]) -> dict[str, Any]:
    """What Postmark posted, under its own names, without attachment content; plus ``headers`` by lower-case name."""
    listed = [
        {"Name": a.name, "ContentType": a.content_type, "ContentLength": a.size, "ContentID": p["ContentID"] or ""}
        for a, p in zip(attachments, post["Attachments"] or [], strict=True)
    ]
    return {**post, "Attachments": listed, "headers": headers}
