"""Reading a message within limits: the stdlib ``email`` parser, fed a little at a time and
given only what it can parse quickly.

The standard library's header parser copies the rest of a value at every token, so its work
grows with the square of a header's length; ``Message.get_param`` does the same for every
parameter; a part's headers are parsed again for every question asked of the part; and each
nesting level is one more level of recursion. A 10 MiB message could keep it busy for minutes
or recurse past Python's limit, so what it is given is bounded here, with limits that ordinary
mail stays well inside. What is past a limit is cut or left unread, never a reason to refuse
(docs/providers.md, "Limits on what is read of a message").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.feedparser import FeedParser
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Any

MAX_HEADERS = 200  # header fields kept per message or part (after them, only the first of each in READ_FIELDS)
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
READ_FIELDS = frozenset(
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
AS_RECEIVED = policy.default.clone(refold_source="none")  # writes headers without the structured parser


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
        if too_long or work > self.budget.header_work or nested_too_deep(unfolded):
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
    keeps its first MAX_HEADERS header fields, then only the first of each field in READ_FIELDS."""

    def __init__(self, policy: Any = None) -> None:
        super().__init__(policy)
        self._room = MAX_HEADERS  # fields kept before only those in READ_FIELDS are
        self._kept: set[str] = set()
        budget = getattr(policy, "budget", None)
        if isinstance(budget, _Budget):
            budget.parts += 1
            if budget.root is None:
                budget.root = self

    def set_raw(self, name: str, value: Any) -> None:
        lower = name.lower()
        if self._room > 0 or (lower in READ_FIELDS and lower not in self._kept):
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


def nested_too_deep(value: str) -> bool:
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


def written(message: Message) -> bytes:
    """An enclosed message as the generator writes it: the bytes of a forwarded ``.eml``.

    The generator refolds every header line longer than 78 characters through the structured
    header parser, so that work is charged to the parse's budget; once it is spent, the
    headers are written as received instead (which only changes the bytes of those lines).
    """
    budget = getattr(message.policy, "budget", None)
    if not isinstance(budget, _Budget):
        return message.as_bytes()
    refolding = sum(
        parse_work(str(value))
        for part in message.walk()
        for name, value in part.raw_items()
        if len(name) + len(value) > 76
    )
    if refolding <= budget.header_work:
        budget.header_work -= refolding
        return message.as_bytes()
    return message.as_bytes(policy=AS_RECEIVED)
