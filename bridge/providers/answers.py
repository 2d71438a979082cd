"""What the form builders (Typeform, Tally, Jotform) share: answers become one message.

Which answer is what (docs/providers.md, "Form builders: name, subject and message"):

* ``name``: the source's ``name_field``; else Jotform's full-name question (type ``name``);
  else the first answer whose label or key is one of :data:`NAME_WORDS`; else a first-name
  answer and a last-name answer (:data:`FIRST_NAME_WORDS`, :data:`LAST_NAME_WORDS`) joined.
* ``subject``: the source's ``subject_field``; else the first answer labelled or keyed
  ``subject``; else the form's title. Always one line.
* ``body``: the source's ``body_field`` answer, else the first answer labelled or keyed as in
  :data:`MESSAGE_WORDS`; its text, a blank line, then every other answer as ``label: value``.
  Without such an answer, every answer as ``label: value``.
* ``email``: the source's ``email_field``; else the first answer of type ``email``.

Detection compares labels and keys, each through :func:`normalise`, with short word lists. A ``*_field``
names an answer by its key or label exactly, ignoring case and surrounding spaces; it replaces
detection, so a configured field that is not answered gives no name, the title, or the plain
list of answers, never a guess. ``fields`` holds each answer by its key (ref, key or id) and by
its label, so templates can use either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from bridge.message import Attachment, InboundMessage
from bridge.providers.fields import honeypot_reason
from bridge.sources import Source

# The lists are short on purpose: a wrong guess puts a stranger's text in the subject or the
# sender's name, while a miss only leaves the answer in the list. ``*_field`` covers the rest.
NAME_WORDS = frozenset({"name", "full name", "fullname", "your name", "your full name"})
FIRST_NAME_WORDS = frozenset({"first name", "firstname", "given name"})
LAST_NAME_WORDS = frozenset({"last name", "lastname", "surname", "family name"})
SUBJECT_WORDS = frozenset({"subject"})
MESSAGE_WORDS = frozenset({"message", "your message"})

_CAMEL_CASE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s_\-]+")
# a label may end in the punctuation of its question ("Name:", "Your name?", "Name *")
_TRAILING = ":?* \t\r\n"


@dataclass
class Answer:
    key: str
    label: str
    type: str  # the builder's own type name; "email" marks a sender candidate, "name" a full name
    value: Any


def is_empty(value: Any) -> bool:
    """An unanswered question: no value, or an empty text, list or object (``0`` and ``False`` are answers)."""
    return value is None or value == "" or value == [] or value == {}


def display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(display(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {display(v)}" for k, v in value.items())
    return str(value)


def normalise(text: str) -> str:
    """``"Your Name:"``, ``"your_name"``, ``"yourName"``, ``"YOUR-NAME"`` -> ``"your name"``."""
    words = _CAMEL_CASE.sub(" ", text.strip().rstrip(_TRAILING))
    return _SEPARATORS.sub(" ", words.lower()).strip()


def link_attachment(url: str, name: str | None = None, content_type: str = "", size: int = 0) -> Attachment:
    """A file known only by its link: listed with the message, never fetched.

    Without a name from the builder, the last part of the URL's path is the file's name.
    """
    if not name:
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "file"
    return Attachment(name=name, content_type=content_type, size=size, url=url)


def answers_message(
    title: str | None,
    answers: Sequence[Answer],
    source: Source,
    dedupe_key: str,
    attachments: Sequence[Attachment] = (),
) -> InboundMessage:
    fields: dict[str, Any] = {}
    for answer in answers:
        fields.setdefault(answer.key, answer.value)
        fields.setdefault(answer.label, answer.value)
    subject = _chosen(answers, source.subject_field, SUBJECT_WORDS)
    message = _chosen(answers, source.body_field, MESSAGE_WORDS)
    return InboundMessage(
        dedupe_key=dedupe_key,
        email=_text(_email(answers, source.email_field)) or None,
        name=_name(answers, source.name_field),
        subject=" ".join(_text(subject).split()) or (title or "").strip() or None,
        body=_body(answers, message),
        fields=fields,
        attachments=list(attachments),
        discard_reason=honeypot_reason(fields, source),
    )


def _body(answers: Sequence[Answer], message: Answer | None) -> str:
    # Only the message answer is left out of the list: the name, address and subject answers
    # stay, as a source's own ``note`` template may not show them anywhere else.
    lines = "\n".join(f"{a.label}: {display(a.value)}" for a in answers if a is not message)
    if message is None:
        return lines
    return f"{_text(message)}\n\n{lines}" if lines else _text(message)


def _email(answers: Sequence[Answer], configured: str | None) -> Answer | None:
    if configured:
        return _named(answers, configured)
    return _first(a for a in answers if a.type == "email")


def _name(answers: Sequence[Answer], configured: str | None) -> str | None:
    if configured:
        return _text(_named(answers, configured)) or None
    single = _first(a for a in answers if a.type == "name") or _detected(answers, NAME_WORDS)
    if single is not None:
        return _text(single)
    parts = (_text(_detected(answers, FIRST_NAME_WORDS)), _text(_detected(answers, LAST_NAME_WORDS)))
    return " ".join(p for p in parts if p) or None


def _chosen(answers: Sequence[Answer], configured: str | None, words: frozenset[str]) -> Answer | None:
    return _named(answers, configured) if configured else _detected(answers, words)


def _named(answers: Sequence[Answer], configured: str) -> Answer | None:
    """The answer a ``*_field`` names, by key or label (case and surrounding spaces aside)."""
    wanted = configured.strip().casefold()
    return _first(a for a in answers if wanted in (a.key.strip().casefold(), a.label.strip().casefold()))


def _detected(answers: Sequence[Answer], words: frozenset[str]) -> Answer | None:
    return _first(a for a in answers if normalise(a.key) in words or normalise(a.label) in words)


def _first(candidates: Iterable[Answer]) -> Answer | None:
    """The first candidate with text: a blank answer is no answer."""
    return next((a for a in candidates if _text(a)), None)


def _text(answer: Answer | None) -> str:
    return display(answer.value).strip() if answer is not None else ""
