"""The request an event came with, as the admin page shows it and as a try-it sample.

What is stored is already free of credentials (``bridge/http/hooks.py`` replaces credential
headers, ``?token=`` and the source's secret in the body at intake); this module only decides
how much of it to show and how.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

SHOWN_BODY_BYTES = 64 * 1024  # the event page shows this much of a body, then says how much is left
SAMPLE_MAX_BYTES = 256 * 1024  # the largest body put into a try-it form
BINARY_SNIFF_BYTES = 8192
# kinds whose body is not kept apart when the message's fields hold all of it (Provider.body_in_message)
REBUILT_KINDS = ("json", "form")


def content_type_of(request: dict[str, Any]) -> str:
    """The Content-Type header as stored, whatever its spelling."""
    headers = request.get("headers") or {}
    return next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")


def is_binary(body: bytes) -> bool:
    """A NUL byte, or bytes that are not UTF-8 text, in the first few KiB."""
    head = body[:BINARY_SNIFF_BYTES]
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    # a cut at the end of the sniffed part may split one character: allow that one
    return text.count("\ufffd") > (1 if len(body) > BINARY_SNIFF_BYTES else 0)


def request_view(raw: dict[str, Any]) -> dict[str, Any]:
    """Method, path, query, headers and the body for the event page: text up to SHOWN_BODY_BYTES
    (UTF-8, undecodable bytes replaced) with the number of bytes left out, a binary body only
    by its size, and a body not kept apart (its fields are the message's) or gone, said so."""
    request, body = raw["request"], raw["body"]
    view: dict[str, Any] = {
        "method": request.get("method") or "POST",
        "path": request.get("path") or "",
        "query": sorted((request.get("query") or {}).items()),
        "headers": list((request.get("headers") or {}).items()),
        "content_type": content_type_of(request),
        "received_bytes": request.get("body_bytes"),
        "size": len(body),
        "text": None,
        "more_bytes": 0,
        "binary": False,
        "in_fields": False,
        "gone": False,
    }
    if not body:
        view["in_fields"] = request.get("body_stored") is False
        view["gone"] = not view["in_fields"] and bool(request.get("body_bytes"))
    elif is_binary(body):
        view["binary"] = True
    else:
        view["text"] = body[:SHOWN_BODY_BYTES].decode("utf-8", errors="replace")
        view["more_bytes"] = max(len(body) - SHOWN_BODY_BYTES, 0)
    return view


def sample_of(kind: str, raw: dict[str, Any]) -> tuple[str, str] | str:
    """(content type, body text) to try the event's request again in its source's form, or why not.

    A ``json`` or ``form`` body kept only as the message's fields is written out again from
    them (the same object, not the same bytes)."""
    request, body = raw["request"], raw["body"]
    content_type = content_type_of(request)
    if not body:
        fields = raw.get("fields")
        if request.get("body_stored") is False and kind in REBUILT_KINDS and isinstance(fields, dict):
            return _rebuilt(kind, fields)
        return "its body is no longer kept (nothing to use as a sample)"
    if len(body) > SAMPLE_MAX_BYTES:
        return f"its body ({len(body)} bytes) is larger than a sample may be ({SAMPLE_MAX_BYTES} bytes)"
    if is_binary(body):
        return f"its body ({len(body)} bytes) is not text"
    return content_type, body.decode("utf-8", errors="replace")


def _rebuilt(kind: str, fields: dict[str, Any]) -> tuple[str, str]:
    if kind == "json":
        return "application/json", json.dumps(fields, ensure_ascii=False, indent=2)
    pairs = [(k, v if isinstance(v, list) else [v]) for k, v in fields.items()]
    return "application/x-www-form-urlencoded", urlencode([(k, str(x)) for k, vs in pairs for x in vs])
