"""Ticket mapping: an :class:`InboundMessage` and its source become one StoreTicketRequest.

Templates were compiled from the sources file at start-up; here they are rendered with
the message as data. The result is always checked against the SPP schema, so a request
that leaves this module is one SPP documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Template

from bridge.errors import MappingFailed
from bridge.message import Attachment, InboundMessage
from bridge.sources import Source, SourcesConfig
from bridge.spp_schema import validate_ticket_request
from bridge.ticket_templates import INTEGER_TEXT

# The longest note sent to SPP, in bytes of UTF-8. A ticket is read by people: a longer message
# (a 10 MiB form field) is cut here, and its last line says where the whole of it is kept.
NOTE_MAX_BYTES = 64 * 1024


def template_context(message: InboundMessage, source: Source, received_at: datetime) -> dict[str, Any]:
    return {
        "email": message.email or "",
        "name": message.name or "",
        "subject": message.subject or "",
        "body": message.body or "",
        "html": message.html or "",
        "fields": message.fields,
        "source": source.name,
        "message_id": message.message_id or "",
        "received_at": received_at.isoformat(),
        "attachments": [{"name": a.name, "content_type": a.content_type, "size": a.size} for a in message.attachments],
    }


def render_ticket(message: InboundMessage, source: Source, received_at: datetime) -> dict[str, Any]:
    """The source's ``ticket`` templates rendered for ``message``; raises MappingFailed (``template_error``)."""
    context = template_context(message, source, received_at)
    return {key: _render(value, context, key) for key, value in source.ticket.items()}


def ticket_request(
    rendered: dict[str, Any],
    message: InboundMessage,
    source: Source,
    user_id: int | None,
    event_id: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The StoreTicketRequest of a rendered mapping. ``user_id`` None: the client is found at
    delivery, which adds it. ``note``: the note when the source's ``ticket.note`` is not set
    (default: the body with the sender on its first line, as a source with ``message: false`` sends it).
    """
    request: dict[str, Any] = {
        "user_id": 0 if user_id is None else user_id,
        "subject": _text(rendered.get("subject")) or _text(message.subject) or f"{source.name} submission",
    }
    if "note" in rendered:
        note = capped_note(_text(rendered["note"]), "", event_id)
    elif note is None:
        note = _default_note(message, event_id)
    if note:
        request["note"] = note
    if _text(rendered.get("status")):
        request["status"] = _integer(rendered["status"], "status")
    employees = [_integer(v, "employees") for v in rendered.get("employees", []) if _text(v)]
    if employees:
        request["employees"] = employees
    tags = [_text(v) for v in rendered.get("tags", []) if _text(v)]
    if tags:
        request["tags"] = tags
    if _text(rendered.get("order")):
        request["order"] = _text(rendered["order"])
    metadata = {k: _text(v) for k, v in rendered.get("metadata", {}).items() if _text(v)}
    if event_id:
        metadata["bridge_event_id"] = event_id
    if metadata:
        request["metadata"] = metadata
    errors = validate_ticket_request(request)
    if errors:
        raise MappingFailed("invalid_ticket_request", f"StoreTicketRequest refused: {errors}")
    if user_id is None:
        del request["user_id"]
    return request


def _render(value: Any, context: dict[str, Any], key: str) -> Any:
    if isinstance(value, Template):
        try:
            return value.render(context)
        except Exception as exc:
            # SecurityError is the sandbox refusing; anything else depends on sender data (``'%(x)s' %
            # fields`` raises KeyError). Either way the event is stored as failed, never lost.
            raise MappingFailed("template_error", f"ticket.{key}: {type(exc).__name__}: {exc}") from None
    if isinstance(value, list):
        return [_render(v, context, key) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, context, f"{key}.{k}") for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip()


def _integer(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = _text(value)
    if not INTEGER_TEXT.match(text):
        raise MappingFailed("invalid_ticket_request", f"ticket.{key}: {text[:100]!r} is not an integer")
    return int(text)


def mapped_user_id(
    rendered: dict[str, Any], message: InboundMessage, source: Source, config: SourcesConfig
) -> int | None:
    """The client the sources file names (docs/conversations.md, clients): ``ticket.user_id`` when
    it renders to an integer, the source's ``clients``, the top-level ``clients``; else None."""
    value = rendered.get("user_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if INTEGER_TEXT.match(_text(value)):
        return int(_text(value))
    email = (message.email or "").strip().lower()
    for clients in (source.clients, config.clients):
        found = lookup_client(clients or {}, email)
        if found is not None:
            return found
    return None


def default_user_id(message: InboundMessage, config: SourcesConfig) -> int:
    """``defaults.user_id``, the last resort; MappingFailed (``unresolved_user``) without one."""
    if config.default_user_id is not None:
        return config.default_user_id
    raise unresolved_user(message.email)


def unresolved_user(email: str | None, looked_up: bool = False) -> MappingFailed:
    who = (email or "").strip().lower() or "a sender without an email address"
    where = "no client in SPP or the sources file" if looked_up else "no client"
    return MappingFailed("unresolved_user", f"{where} matches {who} and the sources file sets no defaults.user_id")


def lookup_client(clients: dict[str, int], email: str) -> int | None:
    """Exact address first, then ``@domain``; ``clients`` keys are lower-case (see sources.py)."""
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not (local and at and domain):
        return None  # not an address: "bigcustomer.com" must not match "@bigcustomer.com"
    if email in clients:
        return clients[email]
    return clients.get(f"@{domain}")


def _default_note(message: InboundMessage, event_id: str | None) -> str:
    sender = sender_line(message)
    text = f"From: {sender}\n\n{message.body or ''}" if sender else message.body or ""
    return capped_note(text, attachment_list(message.attachments), event_id)


def sender_line(message: InboundMessage) -> str:
    """``Name <address>``, either part left out when missing; empty without both. Whitespace is
    collapsed so a name holding a line break cannot push the address off its line."""
    name, email = " ".join((message.name or "").split()), "".join((message.email or "").split())
    return " ".join(p for p in (name, f"<{email}>" if email else "") if p)


def capped_note(text: str, tail: str, event_id: str | None) -> str:
    """``text`` + ``tail`` (the attachment list), stripped; over NOTE_MAX_BYTES, ``text`` is cut there
    and a line says where the whole message is (docs/limits.md). ``tail`` is kept unless it is huge."""
    note = (text + tail).strip()
    if utf8_head(note, NOTE_MAX_BYTES) is note:
        return note
    where = f"under event {event_id}" if event_id else "with its event once stored"
    marker = f"\n\n[cut at {NOTE_MAX_BYTES // 1024} KiB: the full message is in the bridge {where}]"
    if _utf8_size(tail) > NOTE_MAX_BYTES // 4:
        tail = ""  # a list of thousands of files: the event keeps it
    budget = NOTE_MAX_BYTES - _utf8_size(marker) - _utf8_size(tail)
    return utf8_head(text.strip(), budget).rstrip() + marker + tail


def utf8_head(text: str, budget: int) -> str:
    """The longest start of ``text`` that is at most ``budget`` bytes in UTF-8; ``text`` itself when it fits."""
    # budget + 1 characters are more than budget bytes, so the start is enough to decide
    data = text[: budget + 1].encode("utf-8", "surrogatepass")
    if len(data) <= budget:
        return text
    end = budget
    while end > 0 and data[end] & 0xC0 == 0x80:  # not inside a character
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass")


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def attachment_list(attachments: list[Attachment]) -> str:
    """SPP's create endpoint takes no files, so the note says what came with the message."""
    if not attachments:
        return ""
    lines = "\n".join(f"- {a.name} ({human_size(a.size)})" for a in attachments)
    return f"\n\nAttachments (not forwarded):\n{lines}"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} kB"
    return f"{size / (1024 * 1024):.1f} MB"
