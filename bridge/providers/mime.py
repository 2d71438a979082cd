"""What every email kind shares: MIME parsing (stdlib ``email``), HTML to text, auto-replies.

Parsing goes through ``email.policy.default``; this module only adds what the standard
library leaves to the caller: decoding a body whose charset is missing or wrong, choosing
text over HTML, listing attachments, and recognising mail that must create no ticket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

from inscriptis import get_text

from bridge.message import Attachment

# What a declared charset usually means in practice: Latin-1 mail holds Windows-1252 (curly
# quotes, euro sign), and "ASCII" mail with 8-bit bytes is nearly always UTF-8.
_SUPERSETS = {
    "iso-8859-1": "windows-1252",
    "latin-1": "windows-1252",
    "latin1": "windows-1252",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
}
_BULK = {"bulk", "junk", "list"}


@dataclass
class ParsedEmail:
    from_name: str | None
    from_email: str | None
    subject: str | None
    text: str
    html: str | None
    message_id: str | None
    headers: dict[str, str]
    attachments: list[Attachment] = field(default_factory=list)


def parse_rfc822(raw: bytes) -> ParsedEmail:
    """Parse a whole message; never raises on malformed input (the stdlib records defects instead)."""
    message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)
    headers = header_dict(message.items())
    name, address = sender(headers.get("from", ""))
    text_part = _first_part(message, "plain")
    html_part = _first_part(message, "html")
    html = decode_part(html_part) if html_part is not None else None
    text = decode_part(text_part) if text_part is not None else ""
    if not text.strip() and html:
        text = html_to_text(html)
    return ParsedEmail(
        from_name=name,
        from_email=address,
        subject=decode_words(headers["subject"]) if "subject" in headers else None,
        text=text.strip(),
        html=html,
        message_id=clean_message_id(headers.get("message-id")),
        headers=headers,
        attachments=list(attachments_of(message)),
    )


def header_dict(items: Iterable[tuple[str, object]]) -> dict[str, str]:
    """Header names lower-cased, first occurrence kept, values as text."""
    result: dict[str, str] = {}
    for name, value in items:
        result.setdefault(name.lower(), str(value))
    return result


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words (``=?utf-8?q?...?=``); text that is not encoded is kept."""
    try:
        return str(make_header(decode_header(value))).strip()
    except (LookupError, ValueError, UnicodeError):
        return value.strip()


def sender(value: str) -> tuple[str | None, str | None]:
    """(display name, address) from a From header value, encoded words decoded."""
    name, address = parseaddr(decode_words(value))
    address = address.strip()
    return (name.strip() or None), (address.lower() if "@" in address else None)


def recipients(value: str) -> list[str]:
    return [addr.lower() for _, addr in getaddresses([decode_words(value)]) if "@" in addr]


def clean_message_id(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    return value[:250] or None


def decode_part(part: Message) -> str:
    """A text part's content, in its declared charset when that works, else UTF-8, else Windows-1252."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(payload or "")
    declared = (part.get_content_charset() or "").lower()
    return decode_bytes(payload, declared)


def decode_bytes(payload: bytes, declared: str | None = None) -> str:
    candidates = [_SUPERSETS.get(declared, declared)] if declared else []
    for charset in [*candidates, "utf-8", "windows-1252"]:
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", "replace")


def html_to_text(html: str) -> str:
    """Readable text from HTML mail (inscriptis keeps lists, tables and paragraphs apart)."""
    try:
        return str(get_text(html)).strip()
    except Exception:  # inscriptis/lxml on hostile markup: fall back to stripping tags
        return re.sub(r"<[^>]*>", " ", html).strip()


def attachments_of(message: EmailMessage) -> Iterable[Attachment]:
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        name = part.get_filename() or "unnamed"
        yield Attachment(name=decode_words(name), content_type=part.get_content_type(), size=size)


def _first_part(message: EmailMessage, subtype: str) -> Message | None:
    try:
        return message.get_body(preferencelist=(subtype,))
    except (KeyError, ValueError, IndexError):
        return None


def auto_reply_reason(headers: Mapping[str, str], envelope_from: str | None = None) -> str | None:
    """Why this mail must create no ticket (contract section 3), or None.

    ``headers`` are lower-cased names; ``envelope_from`` is the SMTP MAIL FROM when the
    provider gives it (an empty one, ``<>``, marks a bounce).
    """
    auto = headers.get("auto-submitted", "").strip().lower()
    if auto and auto != "no":
        return f"automatic reply (Auto-Submitted: {auto[:40]})"
    if "x-autoreply" in headers or "x-autorespond" in headers:
        return "automatic reply (X-Autoreply)"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in _BULK:
        return f"bulk mail (Precedence: {precedence})"
    return_path = headers.get("return-path")
    if (return_path is not None and return_path.strip() in ("<>", "")) or envelope_from in ("", "<>"):
        return "bounce (null return path)"
    from_address = sender(headers.get("from", ""))[1] or ""
    if from_address.startswith("mailer-daemon@") or from_address.startswith("postmaster@"):
        return "bounce (MAILER-DAEMON)"
    return None
