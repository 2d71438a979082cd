"""``tally``: a Tally webhook (``FORM_RESPONSE``), signed with ``Tally-Signature``.

Tally posts JSON whose ``data.fields`` lists every question with its ``key``, ``label``,
``type`` and ``value``. Choice questions send option ids, resolved here to their text
through the field's ``options`` (matrices through ``rows``/``columns``); uploads and
signatures send ``{name, url, mimeType, size}`` objects, which become attachments known by
their links (the answer keeps the URLs too).
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate
from werkzeug import Request

from bridge.message import Attachment, InboundMessage
from bridge.providers.answers import Answer, answers_message, is_empty, link_attachment
from bridge.providers.base import BodyHmacAuth, LenientSchema, Provider, bounded_key
from bridge.sources import Source

SIGNATURE_HEADER = "Tally-Signature"
CHOICE_TYPES = ("MULTIPLE_CHOICE", "CHECKBOXES", "DROPDOWN", "MULTI_SELECT", "RANKING")
FILE_TYPES = ("FILE_UPLOAD", "SIGNATURE")


class _OptionSchema(LenientSchema):
    id = fields.String(required=True)
    text = fields.String(load_default="", allow_none=True)


class _FieldSchema(LenientSchema):
    key = fields.String(required=True, validate=validate.Length(min=1))
    label = fields.String(load_default=None, allow_none=True)
    type = fields.String(load_default="", allow_none=True)
    value = fields.Raw(load_default=None, allow_none=True)
    options = fields.List(fields.Nested(_OptionSchema), load_default=None, allow_none=True)
    rows = fields.List(fields.Nested(_OptionSchema), load_default=None, allow_none=True)
    columns = fields.List(fields.Nested(_OptionSchema), load_default=None, allow_none=True)


class _DataSchema(LenientSchema):
    responseId = fields.String(required=True, validate=validate.Length(min=1))
    formName = fields.String(load_default=None, allow_none=True)
    # "fields" would shadow marshmallow's own Schema.fields
    questions = fields.List(fields.Nested(_FieldSchema), data_key="fields", load_default=list)


class TallyPayloadSchema(LenientSchema):
    eventType = fields.String(load_default=None, allow_none=True)
    data = fields.Nested(_DataSchema, required=True)


class TallyProvider(BodyHmacAuth, Provider):
    kind = "tally"
    sender_setup = "Tally > Integrations > Webhooks: Endpoint URL {url}, Signing secret = the source's secret"
    content_types = ("application/json",)
    requires_secret = True
    options = ("honeypot",)

    # Tally's own example signs JSON.stringify of the parsed payload; for the compact JSON
    # Tally sends, that is the raw body, which is what is checked.
    signature_header = SIGNATURE_HEADER
    sample = (
        "application/json",
        '{"eventId": "sample-event-1", "eventType": "FORM_RESPONSE", "data": {"responseId": "sample-1",\n'
        ' "formName": "Contact", "fields": [\n'
        '  {"key": "question_name", "label": "Your name", "type": "INPUT_TEXT", "value": "Alice Müller"},\n'
        '  {"key": "question_email", "label": "Email", "type": "INPUT_EMAIL", "value": "alice@example.com"},\n'
        '  {"key": "question_message", "label": "Message", "type": "TEXTAREA", "value": "Grüße aus Köln"}]}}',
    )

    def parse(self, request: Request, source: Source) -> InboundMessage:
        data = self.json_object(request)
        payload = self.load(TallyPayloadSchema, data)["data"]
        questions = _without_checkbox_options(payload.get("questions") or [])
        answers = [answer for answer in map(_answer, questions) if not is_empty(answer.value)]
        attachments = [a for q in questions if q["type"] in FILE_TYPES for a in _attachments(q["value"])]
        return answers_message(
            payload.get("formName"),
            answers,
            source,
            dedupe_key=_dedupe_key(payload["responseId"]),
            attachments=attachments,
        )


def _dedupe_key(response_id: str) -> str:
    return bounded_key("", response_id)


def _without_checkbox_options(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the per-option ``true``/``false`` fields Tally sends beside a CHECKBOXES question.

    Besides ``{key: "question_x", value: [ids], options: [...]}`` Tally posts one field
    per option, ``{key: "question_x_<optionId>", label: "Question (Option)", value: true}``;
    the parent already says which were ticked.
    """
    parents = [q["key"] + "_" for q in questions if q["type"] == "CHECKBOXES" and q.get("options")]
    return [
        q
        for q in questions
        if not (isinstance(q["value"], bool) and q["type"] == "CHECKBOXES" and q["key"].startswith(tuple(parents)))
    ]


def _answer(question: dict[str, Any]) -> Answer:
    kind = question["type"] or ""
    return Answer(
        key=question["key"],
        label=(question.get("label") or "").strip() or question["key"],
        type="email" if kind == "INPUT_EMAIL" else kind,  # "email" marks the sender (answers.py)
        value=_value(question),
    )


def _value(question: dict[str, Any]) -> Any:
    kind, value = question["type"], question["value"]
    if kind in CHOICE_TYPES:
        return _resolve(value, _texts(question.get("options")))
    if kind == "MATRIX" and isinstance(value, dict):
        rows, columns = _texts(question.get("rows")), _texts(question.get("columns"))
        return {rows.get(row, row): _resolve(chosen, columns) for row, chosen in value.items()}
    if kind in FILE_TYPES and isinstance(value, list):
        return [f.get("url") or f.get("name") for f in value if isinstance(f, dict)]
    return value


def _texts(options: list[dict[str, Any]] | None) -> dict[str, str]:
    return {o["id"]: o.get("text") or o["id"] for o in options or []}


def _resolve(value: Any, texts: dict[str, str]) -> Any:
    """Option ids to their text; anything unknown (an "other" answer) is kept as it is."""
    if isinstance(value, list):
        return [texts.get(v, v) if isinstance(v, str) else v for v in value]
    if isinstance(value, str):
        return texts.get(value, value)
    return value


def _attachments(value: Any) -> list[Attachment]:
    if not isinstance(value, list):
        return []
    return [_attachment(f) for f in value if isinstance(f, dict)]


def _attachment(upload: dict[str, Any]) -> Attachment:
    """An upload is known by its link (listed, never fetched); one without a link by its name alone."""
    name, content_type, url = str(upload.get("name") or ""), str(upload.get("mimeType") or ""), upload.get("url")
    if isinstance(url, str) and url.strip():
        return link_attachment(url.strip(), name, content_type, _size(upload))
    return Attachment(name=name or "file", content_type=content_type, size=_size(upload))


def _size(upload: dict[str, Any]) -> int:
    size = upload.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0
