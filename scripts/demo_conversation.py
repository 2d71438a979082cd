"""`make run`'s demonstration: an email with a PDF becomes a ticket whose conversation holds the
client's message and the file, and a reply to it becomes the ticket's second message.

It posts two raw emails to the running bridge's ``mail`` source (kind ``email``), waits for their
delivery through the admin API, and prints the ticket as the SPP sandbox holds it. Message-IDs
are new on every run, so a second ``make run`` on the same database makes a new ticket.

    python scripts/demo_conversation.py --bridge http://127.0.0.1:8000 --sandbox http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import unquote

import requests

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def email(subject: str, body: str, message_id: str, **headers: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Alice Example <alice@example.com>"
    mail["To"] = "support@agency.example"
    mail["Subject"] = subject
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = message_id
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(body)
    return bytes(mail)


def post(bridge: str, token: str, raw: bytes) -> str:
    answer = requests.post(
        f"{bridge}/hooks/mail",
        data=raw,
        headers={"X-Bridge-Token": token, "Content-Type": "message/rfc822"},
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["event_id"])


def delivered(bridge: str, admin_token: str, event_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event = requests.get(
            f"{bridge}/api/events/{event_id}", headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
        ).json()
        if event["status"] in ("delivered", "failed") or time.monotonic() > deadline:
            return dict(event)
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridge", default="http://127.0.0.1:8000")
    parser.add_argument("--sandbox", default="http://127.0.0.1:8081")
    args = parser.parse_args()
    token = os.environ.get("API_TOKEN", "dev-api-token")
    admin_token = os.environ.get("BRIDGE_ADMIN_TOKEN", "dev-admin-token")
    spp_token = os.environ.get("SPP_API_TOKEN", "sandbox-token")

    first_id = make_msgid(idstring=uuid.uuid4().hex[:12], domain="alice.example")
    raw = email("Invoice 4711", "Hello, the invoice attached shows the wrong address.\n\nAlice", first_id)
    with_file = _attach(raw, "Rechnung März.pdf")
    first_event = delivered(args.bridge, admin_token, post(args.bridge, token, with_file))
    reply = email(
        "Re: Invoice 4711",
        "One more thing: the order number is A-7.\n\nOn Monday, Support wrote:\n> We are on it.\n>\n> Support",
        make_msgid(idstring=uuid.uuid4().hex[:12], domain="alice.example"),
        In_Reply_To=first_id,
        References=first_id,
    )
    second_event = delivered(args.bridge, admin_token, post(args.bridge, token, reply))
    ticket_id = first_event.get("ticket_id")
    if first_event["status"] != "delivered" or second_event["status"] != "delivered" or ticket_id is None:
        print(f"demo: not delivered: {first_event['status']} / {second_event['status']}", file=sys.stderr)
        print(f"  {first_event.get('last_error')} / {second_event.get('last_error')}", file=sys.stderr)
        return 1
    ticket = requests.get(
        f"{args.sandbox}/api/tickets/{ticket_id}", headers={"Authorization": f"Bearer {spp_token}"}, timeout=10
    ).json()
    ticket = ticket.get("data", ticket)
    print(f"  Demo: two emails from Alice became ticket {ticket_id} in the sandbox ({ticket['subject']!r}):")
    for number, message in enumerate(sorted(ticket["messages"], key=lambda m: m["id"]), 1):
        first_line = message["message"].splitlines()[0] if message["message"] else ""
        files = ", ".join(unquote(url.rsplit("/", 1)[-1]) for url in message.get("files") or []) or "no files"
        print(f"    message {number} by user {message['user_id']}: {first_line!r} ({files})")
    joined = "joined it" if second_event.get("thread_of") == first_event["id"] else "did NOT join it"
    print(f"    the reply ({second_event['id']}) {joined}: thread_of {second_event.get('thread_of')}")
    print(f"    ticket as SPP holds it: {args.sandbox}/api/tickets/{ticket_id} (Bearer {spp_token})")
    print(f"    the events: {args.bridge}/admin/events/{first_event['id']}")
    return 0


def _attach(raw: bytes, filename: str) -> bytes:
    from email import message_from_bytes, policy

    mail = message_from_bytes(raw, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename=filename)
    return bytes(mail)


if __name__ == "__main__":
    sys.exit(main())
