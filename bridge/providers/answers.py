"""What the form builders (Typeform, Tally, Jotform) share: answers become one message.

The subject is the form's title; the body lists every answer as ``label: value``;
``fields`` holds each answer by its key (ref, key or id) and by its label, so templates
can use either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.message import Attachment, InboundMessage
from bridge.providers.fields import honeypot_reason
from bridge.sources import Source


@dataclass
class Answer:
    key: str
    label: str
    type: str  # the builder's own type name; "email" marks a sender candidate
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
    return InboundMessage(
        dedupe_key=dedupe_key,
        email=_pick(answers, source.email_field, "email"),
        name=_pick(answers, source.name_field, None),
        subject=(title or "").strip() or None,
        body="\n".join(f"{a.label}: {display(a.value)}" for a in answers),
        fields=fields,
        attachments=list(attachments),
        discard_reason=honeypot_reason(fields, source),
    )


def _pick(answers: Sequence[Answer], configured: str | None, answer_type: str | None) -> str | None:
    """The configured field (by key or label), else the first answer of ``answer_type``."""
    for answer in answers:
        if (configured and configured in (answer.key, answer.label)) or (not configured and answer.type == answer_type):
            text = display(answer.value).strip()
            if text:
                return text
    return None
