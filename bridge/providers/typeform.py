"""``typeform``: a Typeform webhook (``form_response``), signed with ``Typeform-Signature``.

Typeform posts JSON: ``form_response.definition`` describes the questions (id, ref,
title) and ``form_response.answers`` holds one object per answered question, whose value
sits under the key named by the answer's ``type`` (``text``, ``email``, ``choice``...).
Each answer becomes an :class:`Answer` keyed by the field's ``ref`` and labelled with the
question title; hidden fields (``form_response.hidden``) follow the answers. A ``file_url``
answer is also an attachment known by its link (Typeform sends no name, type or size).
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate
from werkzeug import Request

from bridge.message import Attachment, InboundMessage
from bridge.providers.answers import Answer, answers_message, is_empty, link_attachment
from bridge.providers.base import BodyHmacAuth, LenientSchema, Provider, bounded_key
from bridge.sources import Source

SIGNATURE_HEADER = "Typeform-Signature"


class _FieldRefSchema(LenientSchema):
    id = fields.String(load_default=None)
    ref = fields.String(load_default=None)
    type = fields.String(load_default=None)


class _AnswerSchema(Schema):
    class Meta:
        unknown = INCLUDE  # the value sits under a key named by ``type``

    field = fields.Nested(_FieldRefSchema, required=True)
    type = fields.String(required=True)


class _DefinitionFieldSchema(LenientSchema):
    id = fields.String(load_default=None)
    ref = fields.String(load_default=None)
    title = fields.String(load_default=None)


class _DefinitionSchema(LenientSchema):
    title = fields.String(load_default=None, allow_none=True)
    # "fields" would shadow marshmallow's own Schema.fields
    questions = fields.List(fields.Nested(_DefinitionFieldSchema), data_key="fields", load_default=list)


class _FormResponseSchema(LenientSchema):
    token = fields.String(required=True, validate=validate.Length(min=1))
    definition = fields.Nested(_DefinitionSchema, load_default=dict)
    answers = fields.List(fields.Nested(_AnswerSchema), load_default=list)
    hidden = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), load_default=dict)


class TypeformPayloadSchema(LenientSchema):
    event_id = fields.String(load_default=None)
    event_type = fields.String(load_default="form_response")
    form_response = fields.Nested(_FormResponseSchema, required=True)


class TypeformProvider(BodyHmacAuth, Provider):
    kind = "typeform"
    sender_setup = "Typeform > Connect > Webhooks: Endpoint {url}, Secret = the source's secret"
    content_types = ("application/json",)
    requires_secret = True
    options = ("honeypot",)

    signature_header = SIGNATURE_HEADER
    signature_prefix = b"sha256="
    sample = (
        "application/json",
        '{"event_id": "01JSAMPLE", "event_type": "form_response", "form_response": {"token": "sample-1",\n'
        ' "definition": {"title": "Contact", "fields": [{"id": "f1", "title": "Your email"},\n'
        '  {"id": "f2", "title": "Message"}]},\n'
        ' "answers": [{"type": "email", "email": "alice@example.com", "field": {"id": "f1", "ref": "email"}},\n'
        '  {"type": "text", "text": "Grüße aus Köln", "field": {"id": "f2", "ref": "message"}}]}}',
    )

    def parse(self, request: Request, source: Source) -> InboundMessage:
        data = self.json_object(request)
        payload = self.load(TypeformPayloadSchema, data)
        response = payload["form_response"]
        definition = response["definition"]
        answers = [*_answers(response["answers"], definition.get("questions") or []), *_hidden(response["hidden"])]
        message = answers_message(
            definition.get("title"),
            answers,
            source,
            dedupe_key=_dedupe_key(response["token"], payload["event_type"]),
            attachments=_files(response["answers"]),
        )
        if payload["event_type"] == "form_response_partial":
            # Typeform can also send unfinished responses; the finished one comes later
            # as ``form_response`` with the same token and makes the ticket.
            message.discard_reason = message.discard_reason or "partial response (form not submitted yet)"
        return message


def _dedupe_key(token: str, event_type: str) -> str:
    return bounded_key("partial:" if event_type == "form_response_partial" else "", token)


def _answers(raw_answers: list[dict[str, Any]], definition_fields: list[dict[str, Any]]) -> list[Answer]:
    titles = {f["id"]: f["title"] for f in definition_fields if f.get("id") and f.get("title")}
    answers = []
    for raw in raw_answers:
        field = raw["field"]
        key = field.get("ref") or field.get("id") or raw["type"]
        label = titles.get(field.get("id") or "") or key
        value = answer_value(raw)
        if not is_empty(value):
            answers.append(Answer(key=key, label=label, type=raw["type"], value=value))
    return answers


def _files(raw_answers: list[dict[str, Any]]) -> list[Attachment]:
    urls = [raw.get("file_url") for raw in raw_answers if raw["type"] == "file_url"]
    return [link_attachment(url.strip()) for url in urls if isinstance(url, str) and url.strip()]


def answer_value(raw: dict[str, Any]) -> Any:
    """The answer's value: under the key its ``type`` names; choices become their labels."""
    kind = raw["type"]
    value = raw.get(kind) if kind not in ("field", "type") else None
    if kind == "choice" and isinstance(value, dict):
        return value.get("label") or value.get("other")
    if kind == "choices" and isinstance(value, dict):
        labels = value.get("labels")
        chosen = list(labels) if isinstance(labels, list) else []
        if value.get("other"):
            chosen.append(value["other"])
        return chosen
    return value


def _hidden(hidden: dict[str, Any]) -> list[Answer]:
    return [Answer(key=k, label=k, type="hidden", value=v) for k, v in hidden.items() if not is_empty(v)]
