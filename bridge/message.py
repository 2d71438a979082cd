"""The normalized inbound message every provider produces, whatever the sender."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from bridge.log import scrub, scrub_data


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    size: int


@dataclass
class InboundMessage:
    """One webhook, normalized.

    ``dedupe_key`` identifies a repeat of the same webhook for the same source (see the
    kinds table, docs/behaviour.md section 3). ``discard_reason`` is set when the message must be
    stored but create no ticket (automatic replies, spam). ``fields`` holds what the
    sender posted (form fields, JSON object, answers by key and label, email headers).
    """

    dedupe_key: str
    email: str | None = None
    name: str | None = None
    subject: str | None = None
    body: str = ""
    html: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    message_id: str | None = None
    discard_reason: str | None = None
    # a one-time value of the signature (Mailgun's token) that must never come back with
    # another dedupe_key: a replayed signature on a different message is refused
    replay_token: str | None = None

    def scrubbed(self, secrets: list[str]) -> InboundMessage:
        """A copy with every ``secrets`` value replaced in its text, fields and attachment names:
        a sender that echoes our secret in its payload must not spread it to SPP or the admin page."""
        if not secrets:
            return self
        texts = {name: scrub(value, secrets) for name in _NAMES if isinstance(value := getattr(self, name), str)}
        attachments = [
            replace(a, name=scrub(a.name, secrets), content_type=scrub(a.content_type, secrets))
            for a in self.attachments
        ]
        return replace(self, **texts, fields=scrub_data(self.fields, secrets), attachments=attachments)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON; shallow (``fields`` is shared, not copied), as it is only serialized."""
        data = {name: getattr(self, name) for name in _NAMES}
        data["attachments"] = [asdict(a) for a in self.attachments]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InboundMessage:
        """The message again from ``to_dict()``; keys a later version no longer knows are dropped."""
        known = {f.name for f in fields(cls)} - {"attachments"}
        attachments = [Attachment(**a) for a in data.get("attachments") or []]
        return cls(**{k: v for k, v in data.items() if k in known}, attachments=attachments)


_NAMES = tuple(f.name for f in fields(InboundMessage))
