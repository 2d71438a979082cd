"""The JSON shapes SPP answers with: TicketResource, MessageResource, User and a Laravel page."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from bridge.sandbox.state import StoredMessage

ADDRESS_KEYS = ("line_1", "line_2", "city", "country", "state", "postcode", "name_f", "name_l", "tax_id")


def user(client: dict[str, Any]) -> dict[str, Any]:
    """A User with every key the reference lists, empty where the sandbox knows nothing."""
    name_f, name_l = client.get("name_f", ""), client.get("name_l", "")
    address = {key: "" for key in (*ADDRESS_KEYS, "company_name", "company_vat")}
    address.update(client.get("address", {}))
    return {
        "id": client["id"],
        "aff_id": None,
        "aff_link": "",
        "created_at": client["created_at"],
        "name_f": name_f,
        "name_l": name_l,
        "email": client["email"],
        "company": client.get("company", ""),
        "tax_id": client.get("tax_id", ""),
        "phone": client.get("phone", ""),
        "address": address,
        "note": client.get("note", ""),
        "balance": client.get("balance", 0),
        "optin": client.get("optin", ""),
        "stripe_id": client.get("stripe_id", ""),
        "custom_fields": client.get("custom_fields", {}),
        "status": client.get("status_id", 1),
        "role_id": 2,
        "role": {"id": 2, "name": "Client"},
        "name": f"{name_f} {name_l}".strip(),
        "spent": None,
        "employee_id": None,
        "managers": [],
        "ga_cid": "",
        "team_owner_ids": [],
        "team_member_ids": [],
    }


def message(stored: StoredMessage, base_url: str) -> dict[str, Any]:
    return {
        "id": stored.id,
        "user_id": stored.user_id,
        "created_at": stored.created_at,
        "message": stored.message,
        "staff_only": stored.staff_only,
        "files": [base_url + file.path for file in stored.files],
    }


def ticket(
    record: dict[str, Any],
    messages: list[StoredMessage] | None = None,
    client: dict[str, Any] | None = None,
    base_url: str = "",
) -> dict[str, Any]:
    """``messages`` oldest first (the reference gives no order); ``client`` the User, when known."""
    body, stamp = record["request"], record["created_at"]
    messages = messages or []
    last = messages[-1].created_at if messages else stamp
    employees = [{"id": e, "name_f": "", "name_l": "", "group_id": 1, "role_id": 1} for e in body.get("employees", [])]
    return {
        "id": record["id"],
        "created_at": stamp,
        "updated_at": last,
        "last_message_at": last,
        "date_closed": None,
        "subject": body["subject"],
        "user_id": body["user_id"],
        "form_data": {},
        "tags": body.get("tags", []),
        "note": body.get("note", ""),
        "employees": employees,
        "status": "Open",
        "source": "API",
        "order_id": None,
        "messages": [message(item, base_url) for item in messages],
        "order": None,
        "ticket": None,
        "client": user(client) if client else {"id": body["user_id"]},
        "metadata": body.get("metadata", {}),
    }


def page(items: list[Any], limit: int, number: int, url: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    """One Laravel page of ``items`` (already in order): ``data``, ``links`` (keeping ``query``) and ``meta``."""
    total = len(items)
    last_page = max(1, math.ceil(total / limit))
    start = (number - 1) * limit
    chunk = items[start : start + limit]

    def link(target: int) -> str:
        return f"{url}?{urlencode({**(query or {}), 'limit': limit, 'page': target})}"

    return {
        "data": chunk,
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": link(number - 1) if number > 1 else None,
            "next": link(number + 1) if number < last_page else None,
        },
        "meta": {
            "current_page": number,
            "from": start + 1 if chunk else None,
            "last_page": last_page,
            "path": url,
            "per_page": limit,
            "to": start + len(chunk) if chunk else None,
            "total": total,
        },
    }
