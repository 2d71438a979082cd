"""``mailgun``: a Mailgun route's ``forward()`` post, as parsed fields or as the raw MIME message.

Parsed mode posts the message as form fields (urlencoded; multipart when it has attachments).
A forward URL that ends in ``mime`` (a source named e.g. ``support-mime``) makes Mailgun post the
untouched message in ``body-mime`` instead; the presence of that field picks the mode, so one
kind serves both URLs.

Mailgun signs ``timestamp`` + ``token`` (not the body) with the account's HTTP webhook signing
key. Its retries, for about 8 h, re-send the first signature, so a timestamp may be up to 12 h
old; the token goes to the HTTP layer as ``replay_token``, which refuses a token that comes
back with another Message-Id (a captured signature reused for a forged message).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

from marshmallow import ValidationError, fields, validate
from werkzeug import Request
from werkzeug.datastructures import FileStorage, MultiDict

from bridge.errors import Unauthorized
from bridge.message import Attachment, InboundMessage
from bridge.providers.base import (
    KEY_COLUMN_LENGTH,
    LenientSchema,
    Provider,
    body_hash,
    bounded_key,
    schema_instance,
    strict_json,
    upload_content,
)
from bridge.providers.mime import (
    MAX_HEADER_CHARS,
    ParsedEmail,
    auto_reply_reason,
    capped,
    clean_message_id,
    decode_words,
    email_message,
    header_dict,
    html_to_text,
    kept_headers,
    parse_rfc822,
    sender,
)
from bridge.sources import Source

MAX_AGE_SECONDS = 12 * 3600  # retries go on for ~8 h and carry the first timestamp and signature
MAX_AHEAD_SECONDS = 5 * 60  # clock skew; a timestamp further ahead was not made by Mailgun
# posted fields left out of InboundMessage.fields: the signature, and the bodies and headers
# the message holds already (body-mime can be megabytes)
NOT_FIELDS = frozenset(
    ("timestamp", "token", "signature", "body-mime", "body-plain", "body-html", "stripped-html", "message-headers")
)
_ATTACHMENT = re.compile(r"attachment-([0-9]{1,6})")
_THREAD_HEADERS = ("in-reply-to", "references")


class SignatureSchema(LenientSchema):
    """The three signature fields Mailgun adds to every post."""

    timestamp = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{1,12}(\.[0-9]{1,9})?$"))
    token = fields.String(required=True, validate=validate.Length(min=1, max=KEY_COLUMN_LENGTH))
    signature = fields.String(required=True, validate=validate.Regexp(r"^[0-9A-Fa-f]{64}$"))


class HeaderPairs(fields.Field):
    """``message-headers``: a JSON list of ``[name, value]`` pairs; what is not a pair is skipped.

    Lenient on purpose: without headers the mail still makes a ticket (only auto-reply
    detection and the Message-Id fallback are lost), whereas a refusal would lose the mail.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[tuple[str, str]]:
        try:
            pairs = strict_json(value) if isinstance(value, str) and value else []
        except (ValueError, RecursionError):
            return []
        if not isinstance(pairs, list):
            return []
        pairs = [p for p in pairs if isinstance(p, list) and len(p) == 2]
        return [(str(p[0]), str(p[1])) for p in kept_headers(pairs, lambda p: p[0])]


class ForwardSchema(LenientSchema):
    """The fields of a ``forward()`` post the message is built from; each may be missing."""

    from_ = fields.String(data_key="from", load_default="")
    sender = fields.String(load_default=None)  # SMTP MAIL FROM; "" is a bounce's null sender
    subject = fields.String(load_default="")
    body_plain = fields.String(data_key="body-plain", load_default="")
    body_html = fields.String(data_key="body-html", load_default="")
    message_headers = HeaderPairs(data_key="message-headers", load_default=list)


class MailgunProvider(Provider):
    kind = "mailgun"
    threads = True
    sender_setup = (
        'Mailgun > Receiving > Routes: action forward("{url}") (a source named *-mime gets raw MIME); '
        "secret = the HTTP webhook signing key"
    )
    content_types = ("application/x-www-form-urlencoded", "multipart/form-data")
    reject_status = 406  # Mailgun's "rejected, do not retry"; any other error is retried for ~8 h
    signature_in_body = True
    token_ttl_seconds = MAX_AGE_SECONDS + MAX_AHEAD_SECONDS  # as long as verify() can accept a token
    example_secret = "key-5d0c9e2b7a41f86e3c1b90d4a7e2f615"
    sample = (
        "application/x-www-form-urlencoded",
        urlencode(
            {
                "recipient": "support@example.com",
                "sender": "alice@example.com",
                "from": "Alice Müller <alice@example.com>",
                "subject": "Hello",
                "body-plain": "Hi there, Grüße aus Köln",
                "Message-Id": "<sample-1@example.com>",
            }
        ),
    )

    def verify(self, request: Request, source: Source) -> None:
        try:
            auth = schema_instance(SignatureSchema).load(request.form.to_dict())
        except ValidationError:
            raise Unauthorized(
                "missing or malformed timestamp, token or signature field (a mailgun source takes the "
                "post of a Mailgun route's forward() action)"
            ) from None
        key = (source.secret or "").encode()
        expected = hmac.new(key, (auth["timestamp"] + auth["token"]).encode(), hashlib.sha256).hexdigest()
        if not key or not hmac.compare_digest(expected.encode(), auth["signature"].lower().encode()):
            raise Unauthorized("wrong signature: the source's secret must be Mailgun's HTTP webhook signing key")
        check_fresh(float(auth["timestamp"]), time.time())

    def parse(self, request: Request, source: Source) -> InboundMessage:
        posted = self.load(ForwardSchema, request.form.to_dict())
        raw = raw_mime(request)
        email = parse_rfc822(raw) if raw is not None else parsed_email(request, posted)
        email = dataclasses.replace(
            email,
            from_email=email.from_email or sender(posted["sender"] or "")[1],
            subject=email.subject or decode_words(posted["subject"]) or None,
        )
        token = request.form.get("token") or None
        return email_message(
            email,
            fields=posted_fields(request.form, email.headers),
            discard_reason=auto_reply_reason(email.headers, posted["sender"]),
            reject_status=self.reject_status,
            refuse=refusal,
            dedupe_key=dedupe_key(email.message_id, token) or body_hash(request),
            replay_token=token,
        )


def refusal(email: ParsedEmail, discard_reason: str | None) -> str | None:
    """A message with neither sender (``from``, else the envelope ``sender``) nor text is refused."""
    if email.from_email or email.text:
        return None
    return "the message has no sender (from, sender) and no body: there is nothing to make a ticket of"


def check_fresh(timestamp: float, now: float) -> None:
    age = now - timestamp
    if age > MAX_AGE_SECONDS:
        raise Unauthorized(f"stale timestamp: signed {age / 3600:.1f} h ago, more than the 12 h a retry can take")
    if age < -MAX_AHEAD_SECONDS:
        raise Unauthorized("timestamp more than 5 minutes in the future: check this server's clock")


def raw_mime(request: Request) -> bytes | None:
    """The ``body-mime`` field as the bytes Mailgun sent, or None for a parsed-mode post."""
    upload = request.files.get("body-mime")
    if upload is not None:
        return upload.read()
    if "body-mime" not in request.form:
        return None
    if request.mimetype == "application/x-www-form-urlencoded":
        # Werkzeug decodes form values as UTF-8, which would spoil 8-bit mail in another
        # charset; latin-1 maps each byte to one character and back, so the bytes survive
        # for the MIME parser to decode by the charset the message declares.
        for name, value in parse_qsl(request.get_data().decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
            if name == "body-mime":
                return value.encode("latin-1")
    return str(request.form["body-mime"]).encode("utf-8", "surrogateescape")


def parsed_email(request: Request, posted: dict[str, Any]) -> ParsedEmail:
    """A parsed-mode post as the same :class:`ParsedEmail` the MIME parser gives."""
    headers = header_dict(posted["message_headers"])
    for header in _THREAD_HEADERS:  # posted as fields too: a post whose message-headers lack them still threads
        value = header_field(request.form, header)
        if value:
            headers.setdefault(header, value[:MAX_HEADER_CHARS])
    if posted["from_"]:
        headers.setdefault("from", posted["from_"])  # auto_reply_reason looks for MAILER-DAEMON there
    name, address = sender(posted["from_"] or headers.get("from", ""))
    html = posted["body_html"] or None
    # the FULL text, quoted earlier messages kept (not stripped-text); Mailgun derives
    # body-plain from HTML-only mail, but when it is empty all the same, the HTML is read
    text = posted["body_plain"].strip() or (html_to_text(html) if html else "")
    return ParsedEmail(
        from_name=name,
        from_email=address,
        subject=decode_words(posted["subject"] or headers.get("subject", "")) or None,
        text=text,
        html=html,
        message_id=clean_message_id(header_field(request.form, "message-id") or headers.get("message-id")),
        headers=headers,
        attachments=capped(list(uploaded_attachments(request))),
    )


def header_field(form: MultiDict[str, str], name: str) -> str | None:
    """A header Mailgun also posts as its own field (``Message-Id``), whatever its capitalisation."""
    for key in form:
        if key.lower() == name:
            return str(form[key])
    return None


def uploaded_attachments(request: Request) -> Iterator[Attachment]:
    """The files ``attachment-1`` … ``attachment-N``, in that order, with their bytes."""
    numbered: list[tuple[int, FileStorage]] = []
    for name, upload in request.files.items(multi=True):
        match = _ATTACHMENT.fullmatch(name)
        if match:
            numbered.append((int(match[1]), upload))
    for _, upload in sorted(numbered, key=lambda pair: pair[0]):
        content = upload_content(upload)
        yield Attachment(
            name=decode_words(upload.filename or "unnamed"),
            content_type=upload.mimetype or "application/octet-stream",
            size=len(content),
            content=content,
        )


def dedupe_key(message_id: str | None, token: str | None) -> str | None:
    """``message-id:<Message-Id>``, else ``mailgun-token:<token>``; hashed when too long for the column."""
    for prefix, value in (("message-id:", message_id), ("mailgun-token:", token)):
        if value:
            return bounded_key(prefix, value)
    return None


def posted_fields(form: MultiDict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    """What a template may use: the posted fields (repeats as lists) and the headers by lower-case name."""
    data: dict[str, Any] = {}
    for key in form:
        if key not in NOT_FIELDS:
            values = form.getlist(key)
            data[key] = values[0] if len(values) == 1 else values
    data["headers"] = headers
    return data
