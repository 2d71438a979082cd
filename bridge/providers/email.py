"""``email``: a raw RFC 822 message posted as the body (a Postfix pipe, a mail-to-webhook service).

The body is the message exactly as a mail server holds it (``message/rfc822``, or
``text/plain`` from tools that know no better); the bridge's shared secret comes in
``X-Bridge-Token`` or ``?token=``. The de-duplication key is the ``Message-ID`` header, else a
hash of From, Date, Subject and body, so a mail server that delivers the same message twice
creates one ticket.
"""

from __future__ import annotations

from werkzeug import Request

from bridge.errors import BadPayload
from bridge.message import InboundMessage
from bridge.providers import mime
from bridge.providers.base import Provider, TokenAuth
from bridge.sources import Source

# headers a template may want, under these names in ``fields`` (all headers are in fields.headers)
_ADDRESS_HEADERS = ("to", "cc", "reply-to", "delivered-to", "x-original-to")


class EmailProvider(TokenAuth, Provider):
    kind = "email"
    threads = True
    sender_setup = (
        "POST the raw message (Content-Type: message/rfc822) to {url} with X-Bridge-Token: <secret> or ?token=<secret>"
    )
    content_types = ("message/rfc822", "text/plain")
    requires_secret = True
    sample = (
        "message/rfc822",
        "From: Alice Müller <alice@example.com>\n"
        "To: support@example.com\n"
        "Subject: Hello\n"
        "Message-ID: <sample-1@example.com>\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "\n"
        "Hi there, Grüße aus Köln",
    )

    def parse(self, request: Request, source: Source) -> InboundMessage:
        raw = request.get_data(cache=True)
        if not raw.strip():
            raise BadPayload("the body is empty: post the raw message (headers, blank line, body) as the body")
        parsed = mime.parse_rfc822(raw.lstrip(b"\r\n"))
        if not parsed.headers:
            raise BadPayload(
                "the body is not an RFC 822 message: it must start with header lines such as 'From: ...' "
                "(post the raw message, e.g. curl --data-binary @message.eml)"
            )
        return mime.email_message(
            parsed,
            fields=_fields(parsed),
            discard_reason=mime.auto_reply_reason(parsed.headers),
            reject_status=self.reject_status,
            refuse=_refusal,
        )


def _refusal(email: mime.ParsedEmail, discard_reason: str | None) -> str | None:
    """A mail to answer needs a From address; automatic mail is stored as discarded without one."""
    return None if email.from_email or discard_reason else "the message has no From address to answer"


def _fields(parsed: mime.ParsedEmail) -> dict[str, object]:
    h = parsed.headers
    fields: dict[str, object] = {
        "from": h.get("from", ""),
        "subject": parsed.subject or "",
        "date": h.get("date", ""),
        "message_id": parsed.message_id or "",
        "in_reply_to": h.get("in-reply-to", ""),
        "references": h.get("references", ""),
        "headers": h,
    }
    for name in _ADDRESS_HEADERS:
        fields[name.replace("-", "_")] = mime.recipients(h.get(name, ""))
    return fields
