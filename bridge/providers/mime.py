"""What every email kind shares: MIME parsing (stdlib ``email``), HTML to text, auto-replies, keys.

Parsing goes through ``email.policy.default``; this module only adds what the standard
library leaves to the caller: decoding a body whose charset is missing or wrong, choosing
text over HTML, listing attachments, keeping one malformed header from failing a whole
message, recognising mail that must create no ticket, and bounding what a sender can make
the parser do (see "Limits" below and docs/providers.md, "Limits on what is read of a message").
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.errors import MessageError
from email.feedparser import FeedParser
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from email.utils import getaddresses, parseaddr
from typing import Any, TypeVar

from bridge.errors import BadPayload, RejectedPayload
from bridge.message import Attachment, InboundMessage
from bridge.providers.base import bounded_key

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

# --- Limits -----------------------------------------------------------------------------------
# The standard library's header parser copies the rest of a value at every token, so its work
# grows with the square of a header's length; ``Message.get_param`` does the same for every
# parameter; a part's headers are parsed again for every question asked of the part; and each
# nesting level is one more level of recursion. A 10 MiB message could keep it busy for minutes
# or recurse past Python's limit, so what it is given is bounded here, with limits that ordinary
# mail stays well inside. What is past a limit is cut or left unread, never a reason to refuse.
MAX_HEADERS = 200  # header fields kept per message or part (after them, only the first of each in _READ)
MAX_HEADER_CHARS = 16 * 1024  # a longer header value is cut to this
MAX_CONTENT_HEADER_CHARS = 4 * 1024  # Content-Type and Content-Disposition, read at every part
MAX_PARAMETERS = 64  # parameters of one of those; the rest are cut
MAX_ADDRESS_HEADER_CHARS = 8 * 1024  # a longer address header is kept as raw text, not parsed
MAX_ADDRESSES = 100  # addresses read from one address header
MAX_COMMENT_DEPTH = 32  # nested (comments) in an address; deeper, the address is unparseable
# the structured header parser's work per message, in characters x tokens (its cost, about
# 2-20 ns each): headers past it are kept as raw text; ordinary mail spends well under half
# of it (a To of 50 addresses is 2 million)
HEADER_PARSE_WORK = 10_000_000
MAX_ATTACHMENTS = 100  # attachments listed; the rest are counted in one summary entry
MAX_HTML_TAGS = 20_000  # HTML with more tags is made text by stripping them, not by inscriptis
MAX_PARTS = 250  # MIME parts read; the rest of the message is not read
MAX_DEPTH = 30  # nesting of multiparts and enclosed messages; the rest of the message is not read
# lines read, a header line counting 10 and a line inside multiparts 1 + depth/4 (what each costs
# the parser); a 10 MiB message of base64 attachments is about 140,000 lines
LINE_WORK = 4 * 600_000
_FEED_CHARS = 2048  # the parser is fed this much at a time; the limits are checked in between

# fields the bridge reads or the MIME structure depends on: after the first MAX_HEADERS fields of
# a message the first of each is still kept (mail servers add their trace headers on top)
_READ = frozenset(
    (
        "from",
        "sender",
        "to",
        "cc",
        "reply-to",
        "delivered-to",
        "x-original-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "auto-submitted",
        "x-autoreply",
        "x-autorespond",
        "precedence",
        "return-path",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
    )
)
# the headers the standard library parses as address lists
_ADDRESS_HEADERS = frozenset(
    ("from", "sender", "to", "cc", "bcc", "reply-to", *(f"resent-{n}" for n in ("from", "sender", "to", "cc", "bcc")))
)
_CONTENT_HEADERS = frozenset(("content-type", "content-disposition"))
# what the header parser takes as a token: a run of whitespace, an encoded word's start, a special
_TOKEN = re.compile(r'\s+|=\?|[()<>@,;:\\"/\[\]?=.]')
_HEADER_LINE = re.compile(r"^[!-9;-~]+:", re.MULTILINE)
_PARENTHESES = re.compile(r"[()]")
_LINE_BREAKS = re.compile(r"[\r\n]")
_AS_RECEIVED = policy.default.clone(refold_source="none")  # writes headers without the structured parser


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


@dataclass
class _Budget:
    """What the parse of one message may still spend; its policy and all its parts share it."""

    header_work: int = HEADER_PARSE_WORK
    parts: int = 0
    root: Message | None = None
    # each header value is parsed once: the stdlib asks a part for its Content-Type many times
    parsed: dict[tuple[str, str], Any] = field(default_factory=dict)


class _BoundedPolicy(EmailPolicy):
    """``policy.default`` whose header parsing stays within the limits above.

    A value is cut where it is read from the source (so that everything after, including
    ``Message.get_param``, sees at most that much), and the structured header parser gets a
    value only while the message's budget lasts; otherwise the value is returned unfolded as a
    :class:`_RawHeader`, which every ``Message`` method reads as well as a header object.
    """

    budget: _Budget

    def __init__(self, budget: _Budget, **kw: Any) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "budget", budget)  # policies are read-only once made; clones share it

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if len(value) > MAX_CONTENT_HEADER_CHARS or value.count(";") > MAX_PARAMETERS:  # this runs per header line
            value = _cut_value(name.lower(), value)
        return name, value

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):
            return super().header_fetch_parse(name, value)
        key = (name.lower(), value)
        if key not in self.budget.parsed:
            self.budget.parsed[key] = self._parse_within_budget(name, value)
        return self.budget.parsed[key]

    def _parse_within_budget(self, name: str, value: str) -> Any:
        unfolded = _LINE_BREAKS.sub("", value)  # as the stdlib unfolds a value before parsing it
        work = parse_work(unfolded)
        too_long = name.lower() in _ADDRESS_HEADERS and len(unfolded) > MAX_ADDRESS_HEADER_CHARS
        if too_long or work > self.budget.header_work or _nested_too_deep(unfolded):
            return _RawHeader(unfolded)
        self.budget.header_work -= work
        return super().header_fetch_parse(name, value)


class _RawHeader(str):
    """A header value the structured parser was not given: a plain string, plus the one attribute
    ``EmailMessage`` reads off a parsed header (``is_attachment`` asks for ``content_disposition``)."""

    @property
    def content_disposition(self) -> str | None:
        return self.split(";", 1)[0].strip().lower() or None


class _BoundedMessage(EmailMessage):
    """A message or part as the bounded parser builds it: counted against the parse's budget;
    keeps its first MAX_HEADERS header fields, then only the first of each field in _READ."""

    def __init__(self, policy: Any = None) -> None:
        super().__init__(policy)
        self._room = MAX_HEADERS  # fields kept before only those in _READ are
        self._kept: set[str] = set()
        budget = getattr(policy, "budget", None)
        if isinstance(budget, _Budget):
            budget.parts += 1
            if budget.root is None:
                budget.root = self

    def set_raw(self, name: str, value: Any) -> None:
        lower = name.lower()
        if self._room > 0 or (lower in _READ and lower not in self._kept):
            self._room -= 1
            self._kept.add(lower)
            super().set_raw(name, value)


def read_message(raw: bytes) -> tuple[EmailMessage, str]:
    """The message as far as the limits let the stdlib parser read it, and the text it did not read.

    The parser is fed a little at a time (as ``BytesParser`` does), and feeding stops once the
    message has more than MAX_PARTS parts, nests deeper than MAX_DEPTH, or its lines have cost
    LINE_WORK: what was read is a well-formed message, and what was not is counted in the
    attachment list.
    """
    budget = _Budget()
    bounded = _BoundedPolicy(budget, header_factory=policy.default.header_factory, message_factory=_BoundedMessage)
    parser = FeedParser(policy=bounded)
    text = raw.decode("ascii", "surrogateescape")  # what BytesParser feeds: one character per byte
    position, work, depth = 0, 0, 0
    while position < len(text) and budget.parts <= MAX_PARTS and work <= LINE_WORK and depth <= MAX_DEPTH:
        chunk = text[position : position + _FEED_CHARS]
        parser.feed(chunk)
        position += len(chunk)
        work += _line_work(chunk, depth)
        depth = _depth(budget.root)
    message = parser.close()
    assert isinstance(message, EmailMessage)
    return message, text[position:]


def _line_work(chunk: str, depth: int) -> int:
    """What the parser spends on a chunk's lines: each line is checked against the boundary of
    every enclosing multipart, and a line that may be a header field costs up to ten times a
    body line (once the whole header block is read, each field is parsed and stored)."""
    lines = chunk.count("\n") + chunk.count("\r") - chunk.count("\r\n")
    return (lines + 9 * len(_HEADER_LINE.findall(chunk))) * (4 + depth)


def _depth(message: Message | None) -> int:
    """How deeply nested the part being read is: the length of the chain of last parts."""
    depth = 0
    while message is not None and message.is_multipart():
        parts = message.get_payload()
        last = parts[-1] if isinstance(parts, list) and parts else None
        message = last if isinstance(last, Message) else None
        depth += 1
    return depth


def _cut_value(name: str, value: str) -> str:
    """A header value as the parser keeps it: at most MAX_HEADER_CHARS; Content-Type and
    Content-Disposition, which the parser reads at every part, at most MAX_CONTENT_HEADER_CHARS
    and MAX_PARAMETERS parameters."""
    if name in _CONTENT_HEADERS:
        value = value[:MAX_CONTENT_HEADER_CHARS]
        if value.count(";") > MAX_PARAMETERS:
            value = ";".join(value.split(";", MAX_PARAMETERS + 1)[: MAX_PARAMETERS + 1])
        return value.rstrip()
    return value if len(value) <= MAX_HEADER_CHARS else value[:MAX_HEADER_CHARS].rstrip()


def parse_work(value: str) -> int:
    """The structured header parser's work on ``value``: it copies the rest of the value at every
    token, so characters x tokens (each unit costs it about 2-20 ns)."""
    return len(value) * (1 + len(_TOKEN.findall(value)))


def _nested_too_deep(value: str) -> bool:
    """Whether (comments) nest deeper than MAX_COMMENT_DEPTH; the address parsers recurse once
    per level. Quoting is not considered, so this can only over-estimate."""
    if value.count("(") <= MAX_COMMENT_DEPTH:
        return False
    depth = 0
    for match in _PARENTHESES.finditer(value):
        depth = depth + 1 if match.group() == "(" else max(0, depth - 1)
        if depth > MAX_COMMENT_DEPTH:
            return True
    return False


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
    """The header fields the limits keep: the first MAX_HEADERS, then the first of each in _READ.

    For the kinds that post headers as data; run before their schema reads the list, since
    loading 400,000 posted headers would take seconds.
    """
    kept: list[_T] = []
    seen: set[str] = set()
    for item in items:
        name = str(name_of(item)).lower()
        if len(kept) < MAX_HEADERS or (name in _READ and name not in seen):
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
    if _nested_too_deep(value):
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
    if _nested_too_deep(text):
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
    """Every attachment part, up to MAX_ATTACHMENTS; the rest, and the parts of what the parser
    did not read (``unread``), are counted in one last entry, so that a message of 50,000
    attachments still makes a note someone can read."""
    listed: list[Attachment] = []
    more = more_size = 0
    for part in message.iter_attachments():
        if len(listed) < MAX_ATTACHMENTS:
            name = part.get_filename() or "unnamed"
            listed.append(Attachment(name=decode_words(name), content_type=part.get_content_type(), size=_size(part)))
        else:
            payload = part.get_payload()
            more, more_size = more + 1, more_size + (len(payload) if isinstance(payload, str) else 0)
    more += _unread_parts(message, unread)
    if more:
        listed.append(more_attachments(more, more_size + len(unread)))
    elif unread.strip():
        listed.append(Attachment(name="… the rest of the message, not read", content_type="", size=len(unread)))
    return listed


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


def _size(part: Message) -> int:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return len(payload)
    try:  # message/rfc822 (a forwarded mail, a bounce report): the enclosed message's bytes
        return sum(_written_size(p) for p in part.get_payload() if isinstance(p, Message))
    except Exception:  # the generator refusing a malformed enclosed message: size unknown
        return 0


def _written_size(message: Message) -> int:
    """The size of an enclosed message as the generator writes it.

    The generator refolds every header line longer than 78 characters through the structured
    header parser, so that work is charged to the parse's budget; once it is spent, the
    headers are written as received instead (which only changes the size by a few bytes).
    """
    budget = getattr(message.policy, "budget", None)
    if not isinstance(budget, _Budget):
        return len(message.as_bytes())
    refolding = sum(
        parse_work(str(value))
        for part in message.walk()
        for name, value in part.raw_items()
        if len(name) + len(value) > 76
    )
    if refolding <= budget.header_work:
        budget.header_work -= refolding
        return len(message.as_bytes())
    return len(message.as_bytes(policy=_AS_RECEIVED))


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
    ``\\n`` line ends whatever the sender used.
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
