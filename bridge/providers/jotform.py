"""``jotform``: a Jotform webhook, ``multipart/form-data`` whose ``rawRequest`` holds the answers.

``rawRequest`` is a JSON string of the submitted form, answers keyed ``q<N>_<uniqueName>``
(``q3_yourEmail``, ``q4_name`` = ``{"first", "last"}``...) among Jotform's own keys
(``slug``, ``buildDate``, ``event_id``...), which are ignored. Jotform sends no question
labels beside them (only the ambiguous ``pretty`` summary), so each label is derived from
the unique name: ``q3_yourEmail`` -> "Your Email". Uploads are listed in ``temp_upload``
with their URLs under the bare unique name; each URL is an attachment known by its link. File
parts of a multipart post are attachments with their bytes. Jotform signs nothing: the bridge's token
comes in the URL (``?token=``) or the ``X-Bridge-Token`` header.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from werkzeug import Request

from bridge.errors import BadPayload, RejectedPayload
from bridge.message import Attachment, InboundMessage
from bridge.providers.answers import Answer, answers_message, is_empty, link_attachment
from bridge.providers.base import Provider, TokenAuth, bounded_key, strict_json
from bridge.sources import Source

QUESTION_KEY = re.compile(r"^q(\d+)_(.+)$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
WORD_BREAK = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
NAME_PARTS = ("prefix", "first", "middle", "last", "suffix")
ADDRESS_PARTS = ("addr_line1", "addr_line2", "city", "state", "postal", "country")
# bookkeeping keys inside a composite answer (empty tables, appointment widgets)
NOISE_KEYS = ("colIds", "rowIds", "implementation")


class JotformProvider(TokenAuth, Provider):
    kind = "jotform"
    sender_setup = "Jotform > Settings > Integrations > WebHooks: {url}?token=<secret>"
    content_types = ("multipart/form-data", "application/x-www-form-urlencoded")
    requires_secret = True
    options = ("honeypot",)
    sample = (
        "application/x-www-form-urlencoded",
        urlencode(
            {
                "formTitle": "Contact",
                "submissionID": "6221904456789012345",
                "rawRequest": json.dumps(
                    {
                        "q3_name": {"first": "Alice", "last": "Müller"},
                        "q4_email": "alice@example.com",
                        "q5_message": "Grüße aus Köln",
                    }
                ),
            }
        ),
    )

    def parse(self, request: Request, source: Source) -> InboundMessage:
        form = request.form
        raw = self._raw_request(form.get("rawRequest"))
        submission_id = (form.get("submissionID") or "").strip()
        if not submission_id:
            raise RejectedPayload("the post has no submissionID field", status=self.reject_status)
        uploads, links = _uploads(raw)
        posted = _posted_files(request)
        # a file that came with its bytes is not listed a second time by its link
        posted_names = {f.name for f in posted}
        links = [link for link in links if link.name not in posted_names]
        return answers_message(
            form.get("formTitle"),
            [*_answers(raw), *uploads],
            source,
            dedupe_key=_dedupe_key(submission_id),
            attachments=[*posted, *links],
        )

    def _raw_request(self, text: str | None) -> dict[str, Any]:
        if text is None:
            raise RejectedPayload(
                "the post has no rawRequest field (is this a Jotform webhook?)", status=self.reject_status
            )
        try:
            raw = strict_json(text)
        except (ValueError, RecursionError):
            raise BadPayload("the rawRequest field is not valid JSON") from None
        if not isinstance(raw, dict):
            raise RejectedPayload("the rawRequest field must be a JSON object", status=self.reject_status)
        return raw


def _dedupe_key(submission_id: str) -> str:
    return bounded_key("", submission_id)


def derive_label(key: str) -> str:
    """``q3_yourEmail`` -> "Your Email", ``q12_typeA`` -> "Type A", ``q5_input5`` -> "Input 5"."""
    match = QUESTION_KEY.match(key)
    name = match.group(2) if match else key
    words = WORD_BREAK.sub(" ", name.replace("_", " ")).split()
    return " ".join(w[:1].upper() + w[1:] for w in words) or key


def _answers(raw: dict[str, Any]) -> list[Answer]:
    answers = []
    for key, value in raw.items():
        if not QUESTION_KEY.match(key):
            continue
        label, readable = derive_label(key), _readable(value)
        if not is_empty(readable):
            answers.append(Answer(key=key, label=label, type=_type(key, label, value, readable), value=readable))
    return answers


def _uploads(raw: dict[str, Any]) -> tuple[list[Answer], list[Attachment]]:
    """``temp_upload: {"q5_proof": ["id.png#server#uuid"]}`` and ``proof: [urls]``: one answer per
    upload field, and one attachment per URL (a file known by its link, never fetched)."""
    uploads = raw.get("temp_upload")
    if not isinstance(uploads, dict):
        return [], []
    answers: list[Answer] = []
    links: list[Attachment] = []
    for key, entries in uploads.items():
        if not isinstance(key, str) or key in raw:
            continue
        match = QUESTION_KEY.match(key)
        listed = raw.get(match.group(2)) if match else None
        urls = [u.strip() for u in listed if isinstance(u, str) and u.strip()] if isinstance(listed, list) else []
        files = urls or [n for n in _names(entries) if n]
        if files:
            answers.append(Answer(key=key, label=derive_label(key), type="file", value=files))
        links.extend(link_attachment(url) for url in urls)
    return answers, links


def _posted_files(request: Request) -> list[Attachment]:
    """File parts of a multipart post, with their bytes exactly as posted."""
    files = []
    for field, upload in request.files.items(multi=True):
        upload.stream.seek(0)
        content = upload.stream.read()
        name = upload.filename or field
        files.append(Attachment(name=name, content_type=upload.mimetype or "", size=len(content), content=content))
    return files


def _names(entries: Any) -> list[str]:
    """``"Report Card.pdf#jotformfs-…#uuid"`` -> ``"Report Card.pdf"`` (when no URL came with it)."""
    return [e.split("#", 1)[0] for e in entries if isinstance(e, str)] if isinstance(entries, list) else []


def _type(key: str, label: str, value: Any, readable: Any) -> str:
    if isinstance(readable, str) and EMAIL.match(readable.strip()) and "email" in (key + label).lower():
        return "email"  # the sender candidate (answers.py)
    if isinstance(value, dict) and set(value) <= set(NAME_PARTS) and (value.get("first") or value.get("last")):
        return "name"
    if isinstance(value, str) and value.startswith("data:"):
        return "signature"
    return "text"


def _readable(value: Any) -> Any:
    """Jotform's composite answers (name, date, phone, address, time) as one line of text."""
    if isinstance(value, str):
        return _without_data_uri(value)
    if isinstance(value, list):
        return [r for r in map(_readable, value) if not is_empty(r)]
    if not isinstance(value, dict):
        return value
    readable = {k: _readable(v) for k, v in value.items() if k not in NOISE_KEYS}
    parts = {k: v for k, v in readable.items() if not is_empty(v)}
    if "date" in value and not parts.get("date") and "duration" in value:
        return None  # an appointment widget left unset
    return _composite(parts) if all(isinstance(v, str) for v in parts.values()) else parts


def _composite(parts: dict[str, str]) -> Any:
    keys = set(parts)
    if keys and keys <= set(NAME_PARTS):
        return " ".join(parts[k] for k in NAME_PARTS if k in parts)
    if keys and keys <= set(ADDRESS_PARTS):
        return ", ".join(parts[k] for k in ADDRESS_PARTS if k in parts)
    if {"year", "month", "day"} <= keys:
        date = f"{parts['year']}-{parts['month']:0>2}-{parts['day']:0>2}"
        time = ":".join(parts[k] for k in ("hour", "min") if k in parts)
        return " ".join(p for p in (date, time, parts.get("ampm", "")) if p)
    if "full" in parts:
        return parts["full"]
    if keys == {"area", "phone"}:
        return f"({parts['area']}) {parts['phone']}"
    if "timeInput" in parts or "hourSelect" in parts:
        clock = parts.get("timeInput") or ":".join(parts[k] for k in ("hourSelect", "minuteSelect") if k in parts)
        return " ".join(p for p in (clock, parts.get("ampm", "")) if p)
    return parts


def _without_data_uri(text: str) -> str:
    """Signatures arrive as ``data:image/png;base64,…``: binary is never kept in fields."""
    head = text[:100]
    if text.startswith("data:") and ";base64," in head:
        return f"[{head[5:].split(';', 1)[0] or 'binary'} data, not kept]"
    return text
