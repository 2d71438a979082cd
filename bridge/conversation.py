"""What an inbound message becomes in SPP: its ticket request and the plan for the rest.

Decided at intake, from the message and the sources file (docs/conversations.md): who the
client is (named by the sources file now, or looked up or created in SPP at delivery), the
ticket's first message with the files to send and those only listed, and, for an email reply,
the earlier mail it may join. The delivery worker (``bridge/steps.py``) carries the plan out
step by step; the plan is stored with the event as plain JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.message import Attachment, InboundMessage
from bridge.sources import Source, SourcesConfig
from bridge.status import ClientHow
from bridge.tickets import (
    capped_note,
    default_user_id,
    human_size,
    mapped_user_id,
    render_ticket,
    sender_line,
    ticket_request,
)

DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# "[#1234]" in a reply's subject names the ticket it belongs to
TICKET_TAG = re.compile(r"\[#([0-9]{1,18})\]")
MAX_REFERENCES = 50
NAME_MAX = 255  # attachments.name and content_type are varchar(255)
NO_TEXT = "(no text)"  # SPP needs a non-blank message; a mail of files alone has none


@dataclass
class Delivery:
    """A message mapped: the StoreTicketRequest (without ``user_id`` when the client is found at
    delivery), the plan, the client when the sources file names it, and the files to keep."""

    ticket_request: dict[str, Any]
    plan: dict[str, Any]
    client_id: int | None = None
    client_how: ClientHow | None = None
    files: list[tuple[int, Attachment]] = field(default_factory=list)


def plan_delivery(
    message: InboundMessage,
    source: Source,
    config: SourcesConfig,
    received_at: datetime,
    event_id: str | None = None,
    *,
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
    threads: bool = False,
) -> Delivery:
    """Map ``message`` for ``source``; ``threads``: the kind is an email kind, whose replies may
    join an earlier ticket. Raises MappingFailed (``unresolved_user``,
    ``template_error`` or ``invalid_ticket_request``); the caller stores the event as failed with that reason."""
    rendered = render_ticket(message, source, received_at)
    plan: dict[str, Any] = {}
    client_id = mapped_user_id(rendered, message, source, config)
    how: ClientHow | None = ClientHow.MAPPED if client_id is not None else None
    email = sender_address(message.email)
    if client_id is None and source.client_lookup and email:
        plan["client"] = client_plan(email, message.name, source.create_clients, config.default_user_id)
    elif client_id is None:
        client_id, how = default_user_id(message, config), ClientHow.DEFAULT
    files: list[tuple[int, Attachment]] = []
    note = None
    if source.message:
        files = sendable_files(message.attachments, max_attachment_bytes)
        sent = [number for number, _ in files]
        text = message_text(rendered, message.body, message, sent, max_attachment_bytes, event_id)
        plan["message"] = {"text": text, "files": sent}
        note = staff_line(message, source, event_id)
        reply = reply_plan(rendered, message, sent, max_attachment_bytes, event_id) if threads else None
        if reply is not None and source.threading:
            plan["reply"] = reply
    request = ticket_request(rendered, message, source, client_id, event_id, note)
    return Delivery(request, plan, client_id, how, files)


def sender_address(email: str | None) -> str | None:
    """The sender's address as SPP would hold it, or None when it is not one."""
    value = (email or "").strip()
    local, at, domain = value.partition("@")
    if not (local and at and domain) or "@" in domain or any(c.isspace() for c in value) or len(value) > 320:
        return None
    return value


def client_plan(email: str, name: str | None, create: bool, fallback: int | None) -> dict[str, Any]:
    """The client step's plan: look ``email`` up, create the client when asked, else ``fallback``."""
    name_f, name_l = split_name(name, email)
    return {"email": email, "name_f": name_f, "name_l": name_l, "create": create, "fallback": fallback}


def split_name(name: str | None, email: str) -> tuple[str, str]:
    """First and last name for a new SPP client: "Alice Müller" -> ("Alice", "Müller"), "Müller,
    Alice" -> ("Alice", "Müller"); without a name, the address's local part as the first name."""
    words = " ".join((name or "").split())
    if "," in words:
        last, _, first = words.partition(",")
        words = f"{first.strip()} {last.strip()}".strip()
    if not words:
        return email.partition("@")[0][:100], ""
    first, _, last = words.partition(" ")
    return first[:100], last[:100]


def staff_line(message: InboundMessage, source: Source, event_id: str | None) -> str:
    """The default note when the sender's words go to the conversation: who wrote, where, which event."""
    sender = sender_line(message) or "an unknown sender"
    event = f" (bridge event {event_id})" if event_id else ""
    return f"From {sender} via {source.name}{event}"


def sendable_files(attachments: list[Attachment], max_bytes: int) -> list[tuple[int, Attachment]]:
    """The files sent with the message, by their place in the list: those whose bytes came with
    the request, within ``max_bytes``. Names and types are cut to what the table holds."""
    sendable = []
    for number, a in enumerate(attachments):
        if a.content is not None and a.problem is None and len(a.content) <= max_bytes:
            name = (a.name or "").strip()[:NAME_MAX] or f"attachment-{number + 1}"
            content_type = (a.content_type or "").strip()[:NAME_MAX]
            if "/" not in content_type:
                content_type = "application/octet-stream"
            sendable.append((number, Attachment(name, content_type, len(a.content), content=a.content)))
    return sendable


def message_text(
    rendered: dict[str, Any],
    body: str | None,
    message: InboundMessage,
    sent: list[int],
    max_bytes: int,
    event_id: str | None,
) -> str:
    """The message posted as the client: ``ticket.message`` as rendered, else ``body``; then the
    files that are not attached, listed (links, files over the limit, files that could not be read)."""
    text = str(rendered["message"] or "") if "message" in rendered else body or ""
    text = text.strip()
    listed = file_list(message.attachments, set(sent), max_bytes)
    return capped_note(text or (NO_TEXT if not listed else ""), listed, event_id) or NO_TEXT


def file_list(attachments: list[Attachment], sent: set[int], max_bytes: int) -> str:
    lines = []
    for number, a in enumerate(attachments):
        if number in sent:
            continue
        if a.url:
            lines.append(f"- {a.name}: {a.url}")
        elif a.problem:
            lines.append(f"- {a.name} (not attached: {a.problem})")
        elif a.content is not None and len(a.content) > max_bytes:
            lines.append(f"- {a.name} ({human_size(a.size)}, not attached: over the {human_size(max_bytes)} limit)")
        else:
            lines.append(f"- {a.name} ({human_size(a.size)}, not attached)")
    return "\n\nFiles:\n" + "\n".join(lines) if lines else ""


def reply_plan(
    rendered: dict[str, Any], message: InboundMessage, sent: list[int], max_bytes: int, event_id: str | None
) -> dict[str, Any] | None:
    """What a reply needs to join an earlier ticket: the Message-IDs it answers, a ``[#<id>]``
    ticket in its subject, and its message with the quoted earlier mail cut. None when it names
    nothing (an ordinary new mail)."""
    references = [r for r in message.references if r][:MAX_REFERENCES]
    tag = TICKET_TAG.search(message.subject or "")
    if not references and tag is None:
        return None
    from bridge.reply_text import new_text  # only replies pay for the quote parser

    text = message_text(rendered, new_text(message.body or ""), message, sent, max_bytes, event_id)
    return {
        "references": references,
        "ticket_ref": int(tag.group(1)) if tag else None,
        "sender": sender_address(message.email),
        "text": text,
    }


def delivery_calls(delivery: Delivery) -> dict[str, Any]:
    """The requests a delivery of ``delivery`` would make, for the preview (nothing is sent)."""
    plan, client = delivery.plan, delivery.plan.get("client")
    calls: dict[str, Any] = {}
    if client:
        create = {k: client[k] for k in ("email", "name_f", "name_l") if client[k]} if client["create"] else None
        calls["client"] = {
            "look_up": f"GET /api/clients?filters[email][$eq]={client['email']}",
            "create_if_not_found": f"POST /api/clients {create}" if create else None,
            "otherwise_user_id": client["fallback"],
        }
        user_id: Any = "<the client found or created>"
    else:
        calls["client"] = {"user_id": delivery.client_id, "how": delivery.client_how}
        user_id = delivery.client_id
    calls["ticket"] = {
        "method": "POST",
        "path": "/api/tickets",
        "body": {**delivery.ticket_request, "user_id": user_id},
    }
    message = plan.get("message")
    if message:
        files = [{"name": a.name, "content_type": a.content_type, "size": a.size} for _, a in delivery.files]
        calls["message"] = {
            "method": "POST",
            "path": "/api/ticket_messages/<the ticket's id>",
            "body": {"message": message["text"], "user_id": user_id},
            "files": files,
        }
    reply = plan.get("reply")
    if reply:
        calls["reply"] = {
            "answers": reply["references"],
            "ticket_in_subject": reply["ticket_ref"],
            "message_if_it_joins": reply["text"],
        }
    return calls
