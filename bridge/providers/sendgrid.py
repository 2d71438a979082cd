"""``sendgrid``: SendGrid (Twilio) Inbound Parse, in parsed or "raw, full MIME" mode.

Inbound Parse always posts ``multipart/form-data``. Parsed mode sends the message in pieces
(``headers`` as one raw block, ``text``, ``html``, ``attachment1..N``); each text field is in
the charset ``charsets`` names for it, not necessarily UTF-8. Raw mode ("POST the raw, full
MIME message") sends the whole message in ``email``; its presence picks the mode. Werkzeug
would decode every field as UTF-8 and mangle the others, so the parts are read here, as bytes.

Credentials: HTTP Basic (``secret: user:pass``, put in the Parse URL). With the source option
``verification_key`` (the public key of a Parse security policy) the ECDSA P-256 / SHA-256
signature over timestamp + raw body is checked too, and signatures older than 5 minutes are
refused. Option ``max_spam_score`` discards mail whose ``spam_score`` is higher.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validates_schema
from werkzeug import Request
from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder

from bridge.errors import BadPayload, Unauthorized
from bridge.message import Attachment, InboundMessage
from bridge.providers.base import BasicAuth, Provider, strict_json
from bridge.providers.mime import (
    ParsedEmail,
    auto_reply_reason,
    capped,
    decode_bytes,
    decode_words,
    email_message,
    html_to_text,
    parse_rfc822,
    sender,
)
from bridge.sources import Source

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger("bridge.providers.sendgrid")

# Unconfirmed for Inbound Parse: SendGrid's Parse security-policy page says only that the
# signature is "in the HTTP headers"; these are the Event Webhook's names (docs/providers.md, sendgrid).
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 5 * 60
MAX_PARTS = 1000  # Flask's MAX_FORM_PARTS default; Werkzeug's own limit would answer 413
# fields that are the message itself (bodies, raw MIME) or machinery, not template data
NOT_FIELDS = frozenset(("email", "text", "html", "headers", "attachment-info", "content-ids", "charsets"))
_ATTACHMENT = re.compile(r"^attachment([0-9]{1,6})$")


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


def form_data(boundary: str, **values: str) -> str:
    """Text fields as a ``multipart/form-data`` body, as Inbound Parse posts them (for the sample)."""
    parts = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in values.items()
    )
    return "".join(parts) + f"--{boundary}--"


class JsonObject(fields.Field):
    """A form field holding a JSON object (``envelope``, ``charsets``, ``attachment-info``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            loaded = strict_json(value) if isinstance(value, str) else None
        except (ValueError, RecursionError):
            loaded = None
        if not isinstance(loaded, dict):
            raise ValidationError("must be a JSON object")
        return loaded


class ParseFormSchema(Schema):
    """The text fields of an Inbound Parse post; which mode it is decides what is required."""

    class Meta:
        unknown = INCLUDE

    headers = fields.String()
    email = fields.String()
    envelope = JsonObject(load_default=dict)
    charsets = JsonObject(load_default=dict)
    attachment_info = JsonObject(data_key="attachment-info", load_default=dict)
    spam_score = fields.String(load_default="")

    @validates_schema
    def has_a_message(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "headers" not in data and "email" not in data:
            raise ValidationError("neither 'headers' (parsed mode) nor 'email' (raw MIME mode) was posted")


class SendGridProvider(BasicAuth, Provider):
    kind = "sendgrid"
    threads = True
    sender_setup = (
        "SendGrid > Settings > Inbound Parse: Destination URL {url} with the secret's user:pass before the host"
    )
    content_types = ("multipart/form-data",)
    options = ("verification_key", "max_spam_score")
    sample = (
        "multipart/form-data; boundary=xYzZY",
        form_data(
            "xYzZY",
            headers="From: Alice <alice@example.com>\r\nTo: support@parse.example.com\r\nSubject: Hello\r\n"
            "Message-ID: <sample-1@example.com>",
            text="Hi there, Grüße aus Köln",
            charsets='{"text": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}',
        ),
    )

    def verify(self, request: Request, source: Source) -> None:
        super().verify(request, source)  # HTTP Basic, always
        key_text = source.options.get("verification_key")
        if key_text:
            verify_signature(request, str(key_text), time.time())

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """Raise ValueError naming the bad option (for the sources file check at start-up)."""
        if options.get("verification_key"):
            load_verification_key(str(options["verification_key"]))
        if options.get("max_spam_score") is not None:
            spam_threshold(options["max_spam_score"])

    def parse(self, request: Request, source: Source) -> InboundMessage:
        parts = read_parts(request)
        texts = {p.name: p for p in parts if p.filename is None}
        posted = self.load(ParseFormSchema, {name: decode_bytes(p.data) for name, p in texts.items()})
        values = field_values(texts, posted["charsets"])
        if "email" in texts:
            email = parse_rfc822(texts["email"].data)
        else:
            email = parsed_email(texts["headers"].data, values, attachments(parts, posted["attachment_info"]))
        envelope_from = posted["envelope"].get("from")
        return email_message(
            email,
            fields=template_fields(values, posted["envelope"], email.headers),
            discard_reason=auto_reply_reason(email.headers, envelope_from if isinstance(envelope_from, str) else None)
            or spam_reason(posted["spam_score"], source),
            reject_status=self.reject_status,
        )


# --- signature (Parse security policy) -------------------------------------------------------


def verify_signature(request: Request, key_text: str, now: float) -> None:
    signature, timestamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise Unauthorized(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header (the source expects signed posts)")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp.strip()):
        raise Unauthorized(f"{TIMESTAMP_HEADER} is not a Unix timestamp")
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise Unauthorized("stale timestamp: the signature is more than 5 minutes old (or ahead of this clock)")
    from cryptography.exceptions import InvalidSignature  # see load_verification_key
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = load_verification_key(key_text)
    except ValueError:
        log.error("the verification_key of this sendgrid source is not an ECDSA P-256 public key")
        raise Unauthorized("the signature cannot be checked: the source's verification_key is unusable") from None
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        key.verify(der, timestamp.encode() + request.get_data(cache=True), ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise Unauthorized(f"wrong {SIGNATURE_HEADER}: check verification_key against the security policy") from None


@functools.lru_cache(maxsize=32)
def load_verification_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid shows the key as base64 DER (no PEM armour); PEM is accepted too."""
    # imported here: only sources with a verification_key need cryptography, which costs
    # every process that loads the app (the delivery worker too) about 8 MB
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.strip().encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ValueError("verification_key: not a base64 DER or PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("verification_key: not an ECDSA P-256 public key")
    return key


# --- the multipart body, as bytes ------------------------------------------------------------


class _Decoder(MultipartDecoder):
    """Werkzeug's decoder reads part headers as strict UTF-8; a raw 8-bit file name is not an error here."""

    def _parse_headers(self, data: bytes | bytearray) -> Headers:
        return super()._parse_headers(decode_bytes(bytes(data)).encode())


def read_parts(request: Request) -> list[Part]:
    boundary = request.mimetype_params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise BadPayload("the multipart/form-data body has no usable boundary")
    decoder = _Decoder(boundary.encode("latin-1", "replace"))
    decoder.receive_data(request.get_data(cache=True))
    decoder.receive_data(None)
    parts: list[Part] = []
    chunks: list[bytes] = []
    try:
        while not isinstance(event := decoder.next_event(), Epilogue):
            if isinstance(event, (Field, File)):
                if len(parts) == MAX_PARTS:
                    raise BadPayload(f"the form has more than {MAX_PARTS} parts")
                filename = event.filename if isinstance(event, File) else None
                content_type = parse_options_header(event.headers.get("content-type", ""))[0]
                parts.append(Part(event.name or "", filename, content_type, b""))
            elif isinstance(event, Data) and parts:
                chunks.append(event.data)
                if not event.more_data:
                    parts[-1].data, chunks = b"".join(chunks), []
    except ValueError:
        raise BadPayload("the multipart/form-data body cannot be parsed") from None
    return parts


# --- parsed mode -----------------------------------------------------------------------------


def field_values(texts: dict[str, Part], charsets: dict[str, Any]) -> dict[str, str]:
    """Every text field but the raw MIME, decoded with the charset ``charsets`` names for it."""
    return {name: field_text(part.data, charsets.get(name)) for name, part in texts.items() if name != "email"}


def field_text(data: bytes, charset: Any) -> str:
    return decode_bytes(data, str(charset) if charset else None)  # SendGrid writes "UTF-8", "iso-8859-1"


def parsed_email(header_block: bytes, values: dict[str, str], files: list[Attachment]) -> ParsedEmail:
    """Parsed mode: the raw header block says who and what (RFC 2047, so no charset guessing), text/html the rest."""
    head = parse_rfc822(header_block.rstrip(b"\r\n") + b"\r\n\r\n")
    name, address = (head.from_name, head.from_email) if head.from_email else sender(values.get("from", ""))
    text, html = values.get("text", "").strip(), values.get("html") or None
    return ParsedEmail(
        from_name=name,
        from_email=address,
        subject=head.subject or decode_words(values.get("subject", "")) or None,
        text=text or (html_to_text(html) if html else ""),
        html=html,
        message_id=head.message_id,
        headers=head.headers,
        attachments=files,
    )


def attachments(parts: list[Part], info: dict[str, Any]) -> list[Attachment]:
    """Files ``attachment1..N`` in order with their bytes, named and typed by ``attachment-info``
    where it says; past MAX_ATTACHMENTS, counted in one entry."""
    numbered = [(int(m.group(1)), p) for p in parts if p.filename is not None and (m := _ATTACHMENT.match(p.name))]
    found = []
    for _, part in sorted(numbered, key=lambda pair: pair[0]):
        meta: dict[str, Any] = info[part.name] if isinstance(info.get(part.name), dict) else {}
        name = meta.get("filename") or meta.get("name") or part.filename or "unnamed"
        content_type = meta.get("type") or part.content_type or "application/octet-stream"
        name, content_type = decode_words(str(name)), str(content_type)
        found.append(Attachment(name=name, content_type=content_type, size=len(part.data), content=part.data))
    return capped(found)


# --- what both modes share -------------------------------------------------------------------


def template_fields(values: dict[str, str], envelope: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The small text fields as posted, the envelope (parsed JSON), the headers by lower-case name."""
    found: dict[str, Any] = {name: value for name, value in values.items() if name not in NOT_FIELDS}
    return {**found, "envelope": envelope, "headers": headers}


def spam_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("max_spam_score: must be a number")
    try:
        return float(value)
    except ValueError:
        raise ValueError("max_spam_score: must be a number") from None


def spam_reason(score_text: str, source: Source) -> str | None:
    """SendGrid's ``spam_score`` (SpamAssassin's, present when the Parse setting checks for spam)."""
    limit = source.options.get("max_spam_score")
    if limit is None or not score_text.strip():
        return None
    try:
        score, threshold = float(score_text), spam_threshold(limit)
    except ValueError:
        log.warning("spam check skipped: spam_score %r or max_spam_score %r is not a number", score_text[:20], limit)
        return None
    return f"spam: score {score:g} above {threshold:g}" if score > threshold else None
