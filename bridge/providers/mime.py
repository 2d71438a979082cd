"""What every email kind shares: MIME parsing (stdlib ``email``), HTML to text, auto-replies, keys.

Parsing goes through ``email.policy.default``; this module only adds what the standard
library leaves to the caller: decoding a body whose charset is missing or wrong, choosing
text over HTML, listing attachments with their bytes (and telling bytes the decoder only
guessed at from the file's), reading the Message-IDs a reply answers, keeping one malformed
header from failing a whole message, recognising mail that must create no ticket, and
bounding what a sender can make the parser do (``mime_limits.py``; docs/providers.md, "Limits
on what is read of a message").
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.errors import InvalidBase64CharactersDefect, InvalidBase64LengthDefect, MessageError
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from typing import Any, TypeVar

from bridge.errors import BadPayload, RejectedPayload
from bridge.message import Attachment, InboundMessage
from bridge.providers.base import bounded_key
from bridge.providers.mime_limits import (
    MAX_ADDRESS_HEADER_CHARS,
    MAX_ADDRESSES,
    MAX_ATTACHMENTS,
    MAX_HEADER_CHARS,
    MAX_HEADERS,
    MAX_HTML_TAGS,
    READ_FIELDS,
    nested_too_deep,
    read_message,
    written,
)

log = logging.getLogger("bridge.providers.mime")
_T = TypeVar("_T")

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
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# base64 whose only characters out of the alphabet are spaces at the end of its lines, padded
# at the end at most (a space between letters means the text is not base64); possessive, so that
# a mismatch at the end of 10 MB is not retried at every earlier position
_BASE64_TEXT = re.compile(r"(?:[A-Za-z0-9+/]*+[ \t]*+(?:\r\n|\n|\r))*+[A-Za-z0-9+/]*+(?:=[ \t]*+){0,2}+\s*+")
_UUENCODE = frozenset(("x-uuencode", "uuencode", "uue", "x-uue"))
_WHITESPACE = re.compile(r"\s")
# a Message-ID in In-Reply-To or References, as it is written there: <...>
_MESSAGE_ID = re.compile(r"<[^<>]+>")
MAX_REFERENCES = 50


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
    """Parse a whole message; text uses ``\\n`` line ends. Raises only BadPayload."""
    try:
        message, unread = read_message(raw)
        headers = message_headers(message)
        text_part, html_part = _body_part(message, "plain"), _body_part(message, "html")
        html = decode_part(html_part) if html_part is not None else None
        text = decode_part(text_part) if text_part is not None else ""
        attachments = list_attachments(message, unread)
    except Exception as exc:  # the stdlib parser on hostile input: a 400, never a 500
        log.warning("unparseable message (%s: %.200s)", type(exc).__name__, " ".join(str(exc).split()))
        raise BadPayload("the body cannot be parsed as an RFC 822 message") from None
    if not text.strip() and html:
        text = html_to_text(html)
    name, address = sender(headers.get("from", ""))
    return ParsedEmail(
        from_name=name,
        from_email=address,
        subject=decode_words(headers["subject"]) if "subject" in headers else None,
        text=newlines(text).strip(),
        html=html,
        message_id=clean_message_id(headers.get("message-id")),
        headers=headers,
        attachments=attachments,
    )


def message_headers(message: Message) -> dict[str, str]:
    """Header names lower-cased, first occurrence kept, values decoded. A header the stdlib
    cannot parse (``Cc: "`` raises IndexError), or that is past the limits, is kept as raw
    text instead of failing the message."""
    result: dict[str, str] = {}
    for name, raw_value in message.raw_items():
        key = name.lower()
        if key in result:  # only the first occurrence is kept, so a repeat is not parsed
            continue
        try:
            value = message.policy.header_fetch_parse(name, raw_value)
        except Exception:
            value = raw_value
        result[key] = str(value) if hasattr(value, "name") else raw_text(str(value))
    return result


def raw_text(value: str) -> str:
    """A header value as sent: its bytes decoded, whitespace folded, at most MAX_HEADER_CHARS."""
    return " ".join(decode_bytes(value[:MAX_HEADER_CHARS].encode("utf-8", "surrogateescape")).split())


def header_dict(items: Iterable[tuple[str, object]]) -> dict[str, str]:
    """Header pairs a provider posted as data: names lower-cased, first occurrence kept, within
    the limits of a parsed message (:func:`kept_headers`, values cut to MAX_HEADER_CHARS)."""
    result: dict[str, str] = {}
    for name, value in kept_headers(items, lambda pair: pair[0]):
        result.setdefault(name.lower(), str(value)[:MAX_HEADER_CHARS])
    return result


def kept_headers(items: Iterable[_T], name_of: Callable[[_T], object]) -> list[_T]:
    """The header fields the limits keep: the first MAX_HEADERS, then the first of each in READ_FIELDS.

    For the kinds that post headers as data; run before their schema reads the list, since
    loading 400,000 posted headers would take seconds.
    """
    kept: list[_T] = []
    seen: set[str] = set()
    for item in items:
        name = str(name_of(item)).lower()
        if len(kept) < MAX_HEADERS or (name in READ_FIELDS and name not in seen):
            kept.append(item)
            seen.add(name)
    return kept


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words (``=?utf-8?q?...?=``); text that is not encoded is kept.

    At most MAX_HEADER_CHARS are read: the kinds that post headers as data (a subject, a file
    name) would otherwise hand the decoder, which is slower than linear, megabytes."""
    value = value[:MAX_HEADER_CHARS]
    try:
        return str(make_header(decode_header(value))).strip()
    except (LookupError, ValueError, UnicodeError, MessageError):  # a malformed word stays as sent
        return value.strip()


def sender(value: str) -> tuple[str | None, str | None]:
    """(display name, address) from a From header value, encoded words decoded."""
    name, address = _parse_address(decode_words(value)[:MAX_ADDRESS_HEADER_CHARS])
    address = address.strip()
    return (name.strip() or None), (address.lower() if "@" in address else None)


def _parse_address(value: str) -> tuple[str, str]:
    """``parseaddr``, which recurses once per nested ``(``: a value nested too deep is unparseable."""
    if nested_too_deep(value):
        return "", ""
    try:
        return parseaddr(value)
    except RecursionError:  # only if the depth check is ever wrong: still no sender, not a 500
        return "", ""


def recipients(value: str) -> list[str]:
    """The first MAX_ADDRESSES addresses of an address header, lower-cased. getaddresses reads
    every address, so the value is first cut after four times that many commas (a quoted name
    may hold one: "Doe, Jane"). A value with comments nested too deep gives none."""
    text = ",".join(decode_words(value).split(",", 4 * MAX_ADDRESSES)[: 4 * MAX_ADDRESSES])
    if nested_too_deep(text):
        return []
    try:
        pairs = getaddresses([text])
    except RecursionError:  # as in _parse_address
        return []
    return [addr.lower() for _, addr in pairs if "@" in addr][:MAX_ADDRESSES]


def clean_message_id(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    return value[:250] or None


def reply_references(headers: Mapping[str, str]) -> list[str]:
    """The Message-IDs a mail answers, nearest first: those in In-Reply-To, then those in
    References from the last (the parent) back to the first (the thread's start); each once,
    at most MAX_REFERENCES, each in the form :func:`clean_message_id` gives the Message-ID of
    the mail it names, so that it compares equal to that mail's ``message_id``."""
    in_reply_to = _MESSAGE_ID.findall(headers.get("in-reply-to", ""))
    references = _MESSAGE_ID.findall(headers.get("references", ""))
    cleaned = (clean_message_id(m) for m in [*in_reply_to, *reversed(references)])
    return list(dict.fromkeys(m for m in cleaned if m))[:MAX_REFERENCES]


def newlines(text: str) -> str:
    """Mail keeps SMTP's CRLF through decoding; ticket notes use ``\\n`` throughout."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_part(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(payload or "")
    return decode_bytes(payload, part.get_content_charset())


def decode_bytes(payload: bytes, declared: str | None = None) -> str:
    """The declared charset's usual superset, the declared charset, UTF-8, then Windows-1252."""
    declared = (declared or "").strip().lower()
    candidates = [_SUPERSETS.get(declared, declared), declared] if declared else []
    for charset in [*candidates, "utf-8", "windows-1252"]:
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeError):  # UnicodeError: codecs such as "undefined" refuse all
            continue
    return payload.decode("windows-1252", "replace")  # only its five undefined bytes are lost


def html_to_text(html: str) -> str:
    """Readable text from HTML mail (inscriptis keeps lists, tables and paragraphs apart).

    inscriptis spends 5-15 us per element, so HTML with more than MAX_HTML_TAGS tags only has
    its tags stripped (a 1 MB table would take it seconds)."""
    if html.count("<") > MAX_HTML_TAGS:
        return _strip_tags(html)
    from inscriptis import get_text  # here, not above: it costs the delivery worker 4 MB it never uses

    try:
        return str(get_text(html)).strip()
    except Exception:  # inscriptis/lxml on hostile markup: fall back to stripping tags
        return _strip_tags(html)


def _strip_tags(html: str) -> str:
    return re.sub(r"<[^>]*>", " ", html).strip()


def list_attachments(message: EmailMessage, unread: str = "") -> list[Attachment]:
    """Every attachment part with its bytes, up to MAX_ATTACHMENTS; the rest, and the parts of
    what the parser did not read (``unread``), are counted in one last entry, so that a message
    of 50,000 attachments still makes a note someone can read."""
    listed: list[Attachment] = []
    more = more_size = 0
    for part in message.iter_attachments():
        if len(listed) < MAX_ATTACHMENTS:
            listed.append(part_attachment(part))
        else:
            payload = part.get_payload()
            more, more_size = more + 1, more_size + (len(payload) if isinstance(payload, str) else 0)
    more += _unread_parts(message, unread)
    if more:
        listed.append(more_attachments(more, more_size + len(unread)))
    elif unread.strip():
        listed.append(Attachment(name="… the rest of the message, not read", content_type="", size=len(unread)))
    return listed


def part_attachment(part: Message) -> Attachment:
    """One attachment part: its name, type and decoded bytes, or why they cannot be had."""
    name = decode_words(part.get_filename() or "unnamed")
    content_type = part.get_content_type()
    try:
        content, problem = _part_content(part)
        size = _encoded_size(part) if content is None else len(content)
    except Exception as exc:  # the stdlib on a hostile part: this file is listed, the message still read
        log.warning("attachment not decoded (%s: %.200s)", type(exc).__name__, " ".join(str(exc).split()))
        content, problem, size = None, "could not be decoded", 0
    return Attachment(name=name, content_type=content_type, size=size, content=content, problem=problem)


def _part_content(part: Message) -> tuple[bytes | None, str | None]:
    """(bytes, None), or (None, why not). ``get_payload(decode=True)`` never fails: on bad base64
    it returns what it could make of it and registers a defect on the part, and on bad uuencode
    it returns the encoded text, so both are looked for here."""
    if part.is_multipart():
        if part.get_content_maintype() != "message":  # a multipart given as an attachment: no one file
            return None, None
        # message/rfc822 (a forwarded mail, a bounce report): the enclosed message's bytes
        return b"".join(written(p) for p in part.get_payload() if isinstance(p, Message)), None
    known = len(part.defects)
    content = part.get_payload(decode=True)
    if not isinstance(content, bytes):
        return None, None
    encoding = _transfer_encoding(part)
    if encoding == "base64":
        found = {type(d) for d in part.defects[known:]}
        # missing padding is decoded exactly, and so are spaces at the end of lines;
        # other characters out of the alphabet, padding before the end, or a length no padding
        # can mend leave bytes that are not the file
        garbled = InvalidBase64CharactersDefect in found and not _BASE64_TEXT.fullmatch(_text_of(part))
        if garbled or InvalidBase64LengthDefect in found:
            return None, "could not be decoded: invalid base64"
    elif encoding in _UUENCODE and len(content) == len(_text_of(part)):  # what failing to decode returns
        return None, "could not be decoded: invalid uuencode"
    return content, None


def _text_of(part: Message) -> str:
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def _encoded_size(part: Message) -> int:
    """The size of a part whose bytes are not kept: what its base64 would decode to, else the
    length of its text, else (a multipart) the enclosed parts as written."""
    if part.is_multipart():
        try:
            return sum(len(written(p)) for p in part.get_payload() if isinstance(p, Message))
        except Exception:  # the generator refusing a malformed enclosed message: size unknown
            return 0
    text = _text_of(part)
    return base64_size(text) if _transfer_encoding(part) == "base64" else len(text)


def _transfer_encoding(part: Message) -> str:
    return str(part.get("content-transfer-encoding", "")).lower()  # as get_payload reads it


def more_attachments(count: int, size: int) -> Attachment:
    """The entry that stands for the attachments past MAX_ATTACHMENTS (``size``: theirs together)."""
    return Attachment(name=f"… and {count:,} more attachments", content_type="", size=size)


def capped(attachments: list[Attachment]) -> list[Attachment]:
    """The first MAX_ATTACHMENTS of a kind's attachment list, and one entry counting the rest."""
    if len(attachments) <= MAX_ATTACHMENTS:
        return attachments
    rest = attachments[MAX_ATTACHMENTS:]
    return [*attachments[:MAX_ATTACHMENTS], more_attachments(len(rest), sum(a.size for a in rest))]


def _unread_parts(message: Message, unread: str) -> int:
    """The parts of a multipart message in the text the parser did not read, by their delimiters."""
    boundary = message.get_boundary() if unread and message.get_content_maintype() == "multipart" else None
    if not boundary:
        return 0
    delimiter, text = "\n--" + boundary, "\n" + unread
    return max(0, text.count(delimiter) - text.count(delimiter + "--"))


def decode_base64(text: str) -> bytes:
    """The bytes of base64 a JSON kind posts (line breaks and missing padding allowed, as for a
    MIME part); ValueError when it is not base64."""
    if _WHITESPACE.search(text):
        text = "".join(text.split())
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)  # binascii.Error is a ValueError


def posted_attachment(
    name: str, content_type: str, encoded: str | None, size: int | None, url: str | None = None
) -> Attachment:
    """An attachment a JSON kind posts: its bytes from the base64 ``encoded``, else its ``url``
    (listed, never fetched). ``size`` is the one posted, if any; the bytes' own length wins.
    Content that is not base64, or missing beside a size above 0, is listed with the problem."""
    name = decode_words(name) or "unnamed"
    if encoded:
        try:
            content = decode_base64(encoded)
        except ValueError:
            problem = "could not be decoded: invalid base64"
            return Attachment(name, content_type, base64_size(encoded) if size is None else size, problem=problem)
        return Attachment(name, content_type or "application/octet-stream", len(content), content=content)
    if url:
        return Attachment(name, content_type, size or 0, url=url)
    if size:
        return Attachment(name, content_type, size, problem="its content was not posted")
    return Attachment(name, content_type or "application/octet-stream", 0, content=b"")


def base64_size(content: str) -> int:
    """The decoded size of base64 text (line breaks allowed), without decoding it."""
    text = "".join(content.split())
    return max(0, len(text) * 3 // 4 - text[-2:].count("="))


def _body_part(message: EmailMessage, subtype: str) -> Message | None:
    try:
        return message.get_body(preferencelist=(subtype,))
    except (KeyError, ValueError, IndexError):
        return None


# an email kind's rule of what it refuses: (parsed email, discard reason) -> why it is refused, or None
Refusal = Callable[[ParsedEmail, str | None], str | None]


def nothing_to_make_a_ticket_of(email: ParsedEmail, discard_reason: str | None) -> str | None:
    """The default rule: a message with neither sender nor text is refused, discarded or not."""
    if email.from_email or email.text:
        return None
    return "the message has no sender and no body: there is nothing to make a ticket of"


def email_message(
    email: ParsedEmail,
    *,
    fields: dict[str, Any],
    discard_reason: str | None,
    reject_status: int,
    refuse: Refusal = nothing_to_make_a_ticket_of,
    dedupe_key: str | None = None,
    replay_token: str | None = None,
) -> InboundMessage:
    """The message of a parsed email, for every email kind.

    ``refuse`` is the kind's rule of what it answers with ``reject_status``. The de-duplication
    key is ``dedupe_key`` when the kind has its own, else :func:`email_dedupe_key`. The body gets
    ``\\n`` line ends whatever the sender used; ``references`` come from the In-Reply-To and
    References headers (:func:`reply_references`).
    """
    reason = refuse(email, discard_reason)
    if reason:
        raise RejectedPayload(reason, status=reject_status)
    return InboundMessage(
        dedupe_key=email_dedupe_key(email) if dedupe_key is None else dedupe_key,
        email=email.from_email,
        name=email.from_name,
        subject=email.subject,
        body=newlines(email.text),
        html=email.html,
        fields=fields,
        attachments=email.attachments,
        message_id=email.message_id,
        references=reply_references(email.headers),
        discard_reason=discard_reason,
        replay_token=replay_token,
    )


def email_dedupe_key(email: ParsedEmail) -> str:
    """The RFC Message-ID, else a hash of sender, date, subject and text (docs/behaviour.md section 3, kinds).

    Without a Message-ID (some scripts send none) the same message delivered twice still has
    the same sender, date, subject and text.
    """
    if email.message_id:
        return bounded_key("message-id:", email.message_id)
    content = [email.headers.get("from", ""), email.headers.get("date", ""), email.subject or "", email.text]
    return "sha256:" + hashlib.sha256(json.dumps(content).encode("utf-8", "surrogatepass")).hexdigest()


def auto_reply_reason(headers: Mapping[str, str], envelope_from: str | None = None) -> str | None:
    """Why this mail must create no ticket (docs/behaviour.md section 3), or None.

    ``headers`` are lower-cased names; ``envelope_from`` is the SMTP MAIL FROM when the
    provider gives it (an empty one, ``<>``, marks a bounce). The reason quotes a header and
    ends up in a text column, so control characters become ``?`` (PostgreSQL refuses NUL).
    """
    reason = _auto_reply_reason(headers, envelope_from)
    return _CONTROL.sub("?", reason) if reason else None


def _auto_reply_reason(headers: Mapping[str, str], envelope_from: str | None) -> str | None:
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
