"""The normalized inbound message every provider produces, whatever the sender."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from bridge.log import scrub, scrub_data


@dataclass(frozen=True)
class Attachment:
    """A file that came with a message.

    ``content`` holds the bytes when the request carried them (email kinds, form uploads); it is
    stored apart from the message (``attachments`` table) and never serialised with it. ``url``
    is set for a file known only by its link (form builders), which is listed, never fetched.
    ``problem`` says why a file that came with the message cannot be sent (it could not be
    decoded): such a file is listed by name, never dropped silently.
    """

    name: str
    content_type: str
    size: int
    url: str | None = None
    content: bytes | None = field(default=None, repr=False, compare=False)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "content_type": self.content_type, "size": self.size}
        if self.url is not None:
            data["url"] = self.url
        if self.problem is not None:
            data["problem"] = self.problem
        return data


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
    # Message-IDs this mail answers: In-Reply-To first, then References from the newest back
    # (docs/conversations.md, follow-ups); empty for every kind but email
    references: list[str] = field(default_factory=list)
    discard_reason: str | None = None
    # a one-time value of the signature (Mailgun's token) that must never come back with
    # another dedupe_key: a replayed signature on a different message is refused
    replay_token: str | None = None

    def scrubbed(self, secrets: list[str]) -> InboundMessage:
        """A copy with every ``secrets`` value replaced in its text, fields, references and attachment names and links:
        a sender that echoes our secret in its payload must not spread it to SPP or the admin page."""
        if not secrets:
            return self
        texts: dict[str, Any] = {
            name: scrub(value, secrets) for name in _NAMES if isinstance(value := getattr(self, name), str)
        }
        attachments = [
            replace(
                a,
                name=scrub(a.name, secrets),
                content_type=scrub(a.content_type, secrets),
                url=scrub(a.url, secrets) if a.url is not None else None,
            )
            for a in self.attachments
        ]
        references = [scrub(r, secrets) for r in self.references]
        return replace(
            self, **texts, fields=scrub_data(self.fields, secrets), attachments=attachments, references=references
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON; shallow (``fields`` is shared, not copied), as it is only serialized."""
        data = {name: getattr(self, name) for name in _NAMES}
        data["attachments"] = [a.to_dict() for a in self.attachments]
        return data

    def to_stored(self) -> dict[str, Any]:
        """``to_dict()`` with each long text that is also a value in ``fields`` (a form's ``message``
        field is the body) replaced by that value's path, under ``in_fields``: the text is stored once.
        :func:`expand_stored` and :meth:`from_dict` put it back."""
        data = self.to_dict()
        paths: dict[str, list[str | int]] = {}
        for name in _TEXTS:
            value = data[name]
            if isinstance(value, str) and len(value) >= SHARED_TEXT_MIN_LENGTH:
                path = _path_of(self.fields, value)
                if path is not None:
                    paths[name], data[name] = path, None
        if paths:
            data[IN_FIELDS] = paths
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InboundMessage:
        """The message again from ``to_dict()`` or ``to_stored()``; keys a later version no longer
        knows are dropped."""
        data = expand_stored(data)
        known = {f.name for f in fields(cls)} - {"attachments"}
        known_file = {f.name for f in fields(Attachment)} - {"content"}
        attachments = [
            Attachment(**{k: v for k, v in a.items() if k in known_file}) for a in data.get("attachments") or []
        ]
        return cls(**{k: v for k, v in data.items() if k in known}, attachments=attachments)


_NAMES = tuple(f.name for f in fields(InboundMessage))
# texts that may repeat a field's value, and from which length storing them once is worth a path
_TEXTS = ("email", "name", "subject", "body", "html")
# shorter texts are stored twice as before: they cost little, and a stored row stays readable
SHARED_TEXT_MIN_LENGTH = 1024
IN_FIELDS = "in_fields"


def expand_stored(data: dict[str, Any]) -> dict[str, Any]:
    """A stored message (``to_stored()``) as ``to_dict()`` gives it: each text named under
    ``in_fields`` read back from its path in ``fields``. Other data is returned as it is."""
    paths = data.get(IN_FIELDS)
    if not isinstance(paths, dict):
        return data
    expanded = {k: v for k, v in data.items() if k != IN_FIELDS}
    for name, path in paths.items():
        expanded[name] = _value_at(data.get("fields"), path)
    return expanded


def _path_of(data: Any, text: str) -> list[str | int] | None:
    """Where in ``data`` (nested dicts and lists) a string equal to ``text`` first is; None if nowhere.

    Iterative, with a link to the parent instead of a path per node, so that JSON nested as deep
    as the parser allows costs neither the stack nor memory per level.
    """
    stack: list[_Step] = [(data, None, None)]
    while stack:
        step = stack.pop()
        node = step[0]
        if isinstance(node, str):
            if len(node) == len(text) and node == text:
                return _path_to(step)
        elif isinstance(node, dict):
            stack.extend((value, key, step) for key, value in reversed(node.items()) if isinstance(key, str))
        elif isinstance(node, list):
            stack.extend((node[index], index, step) for index in range(len(node) - 1, -1, -1))
    return None


# (node, its key or index in the parent, the parent's step)
_Step = tuple[Any, "str | int | None", Any]


def _path_to(step: _Step) -> list[str | int]:
    path: list[str | int] = []
    while step[2] is not None:
        key = step[1]
        assert key is not None  # every step below the top has one
        path.append(key)
        step = step[2]
    return path[::-1]


def _value_at(data: Any, path: Any) -> Any:
    for step in path if isinstance(path, list) else ():
        found = isinstance(data, dict) and isinstance(step, str) and step in data
        found = found or (isinstance(data, list) and isinstance(step, int) and 0 <= step < len(data))
        if not found:
            return None
        data = data[step]
    return data
