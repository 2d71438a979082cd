"""``email``: a raw RFC 822 message posted as the body (a Postfix pipe, a mail-to-webhook service).

The body is the message exactly as a mail server holds it (``message/rfc822``, or
``text/plain`` from tools that know no better); the bridge's shared secret comes in
``X-Bridge-Token`` or ``?token=``. The de-duplication key is the ``Message-ID`` header, else a
hash of From, Date, Subject and body, so a mail server that delivers the same message twice
creates one ticket.

"""

from __future__ import annotations

import logging
import re

from werkzeug import Request

from bridge.errors import BadPayload, RejectedPayload
from bridge.message import InboundMessage
from bridge.providers import mime
from bridge.providers.base import Provider, TokenAuth
from bridge.sources import Source

log = logging.getLogger("bridge.providers.email")

# events.dedupe_key is varchar(255); PostgreSQL text holds no NUL; keep keys printable and short
_MAX_KEY = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# headers a template may want, under these names in ``fields`` (all headers are in fields.headers)
_ADDRESS_HEADERS = ("to", "cc", "reply-to", "delivered-to", "x-original-to")


class EmailProvider(TokenAuth, Provider):
    kind = "email"
    sender_setup = (
        "POST the raw message (Content-Type: message/rfc822) to {url} with X-Bridge-Token: <secret> or ?token=<secret>"
    )
    content_types = ("message/rfc822", "text/plain")
    requires_secret = True

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
        discard = mime.auto_reply_reason(parsed.headers)
        if not parsed.from_email and not discard:
            raise RejectedPayload("the message has no From address to answer", status=self.reject_status)
        return InboundMessage(
            dedupe_key=mime.email_dedupe_key(parsed),
            email=parsed.from_email,
            name=parsed.from_name,
            subject=parsed.subject,
            body=parsed.text,
            html=parsed.html,
            fields=_fields(parsed),
            attachments=parsed.attachments,
            message_id=parsed.message_id,
            discard_reason=discard,
        )


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
