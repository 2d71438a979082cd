"""SPP's API as the sandbox answers it, once a request got past the fault script.

Every view checks in the order a Laravel app does: the token (401), then the ticket in the
path (404), then the fields (422).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, jsonify, request

from bridge.sandbox import resources
from bridge.sandbox.state import EmailTaken, Sandbox
from bridge.sandbox.validation import (
    Errors,
    MessageFields,
    validate_client_request,
    validate_message_form,
    validate_message_json,
    validate_ticket_request,
)

RECORDED_HEADERS = ("X-Api-Version", "User-Agent", "Content-Type", "Accept")
DEFAULT_LIMIT, MAX_LIMIT = 15, 100
EMAIL_FILTER = "filters[email][$eq]"

Answer = tuple[Response, int]


class Refused(Exception):
    """Raised by a check that has the answer already (401, 404, 400, 422): the view stops there."""

    def __init__(self, answer: tuple[Response, int]) -> None:
        super().__init__(answer[1])
        self.answer = answer


def error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"message": message, **extra}), status


def invalid(errors: Errors) -> tuple[Response, int]:
    return error(422, "The given data was invalid.", errors=errors)


def authenticate(sandbox: Sandbox) -> None:
    if request.headers.get("Authorization") != f"Bearer {sandbox.token}":
        raise Refused(error(401, "Unauthenticated."))


def identified(sandbox: Sandbox, body: Any, status: int = 200, identifier: str | None = None) -> tuple[Response, int]:
    """An answer with the headers SPP puts on what it serves: X-Api-Identifier, X-Api-Version."""
    response = jsonify(body)
    response.headers["X-Api-Identifier"] = identifier or str(uuid.uuid4())
    response.headers["X-Api-Version"] = sandbox.api_version
    return response, status


def base_url() -> str:
    return request.host_url.rstrip("/")


def recorded_headers() -> dict[str, str | None]:
    return {name: request.headers.get(name) for name in RECORDED_HEADERS}


def read_json_object() -> dict[str, Any]:
    if not request.is_json:
        raise Refused(error(400, "The body must be JSON (Content-Type: application/json)."))
    try:
        body = json.loads(request.get_data())
    except ValueError as exc:
        raise Refused(error(400, f"The body is not valid JSON: {exc}")) from None
    if not isinstance(body, dict):
        raise Refused(error(400, "The body must be a JSON object."))
    return body


def page_arguments() -> tuple[int, int]:
    """``limit`` (1-100, default 15) and ``page`` (from 1) of a list request."""
    errors: Errors = {}
    values = {"limit": DEFAULT_LIMIT, "page": 1}
    for name, top in (("limit", MAX_LIMIT), ("page", None)):
        raw = request.args.get(name)
        if raw is None:
            continue
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1 or (top is not None and int(raw) > top):
            bounds = f"between 1 and {top}" if top else "at least 1"
            errors[name] = [f"The {name} field must be an integer {bounds}."]
        else:
            values[name] = int(raw)
    if errors:
        raise Refused(invalid(errors))
    return values["limit"], values["page"]


def find_ticket(sandbox: Sandbox, key: str) -> dict[str, Any]:
    found = sandbox.find_ticket(key)
    if found is None:
        raise Refused(error(404, "Ticket not found."))
    return found


# --- tickets ---


def create_ticket(sandbox: Sandbox) -> Answer:
    authenticate(sandbox)
    body = read_json_object()
    errors = validate_ticket_request(body)
    if errors:
        raise Refused(invalid(errors))
    record = sandbox.store(body, recorded_headers())
    client = sandbox.client(body["user_id"])
    return identified(sandbox, resources.ticket(record, client=client), 201, record["api_identifier"])


def show_ticket(sandbox: Sandbox, ticket: str) -> Answer:
    authenticate(sandbox)
    record = find_ticket(sandbox, ticket)
    messages = sandbox.messages_of(record["id"])
    client = sandbox.client(record["request"]["user_id"])
    return identified(sandbox, resources.ticket(record, messages, client, base_url()))


# --- messages ---


def _message_fields() -> tuple[MessageFields, list[tuple[str, str, bytes]], str]:
    """The request's fields, its files (name, content type, bytes) and how they came."""
    if request.mimetype == "multipart/form-data":
        parts = list(request.files.items(multi=True))
        described = [(name, part.filename, part.content_type) for name, part in parts]
        errors, fields = validate_message_form(list(request.form.items(multi=True)), described)
        if fields is None:
            raise Refused(invalid(errors))
        files = [(part.filename or "", part.content_type or "", part.read()) for _, part in parts]
        return fields, files, "multipart"
    if not request.is_json:
        raise Refused(error(400, "The body must be JSON or multipart/form-data."))
    errors, fields = validate_message_json(read_json_object())
    if fields is None:
        raise Refused(invalid(errors))
    return fields, [], "json"


def create_message(sandbox: Sandbox, ticket: str) -> Answer:
    authenticate(sandbox)
    record = find_ticket(sandbox, ticket)
    fields, files, transport = _message_fields()
    stored = sandbox.add_message(
        record["id"], fields.message, fields.user_id, fields.staff_only, files, transport, recorded_headers()
    )
    return identified(sandbox, resources.message(stored, base_url()), 201, stored.api_identifier)


def list_messages(sandbox: Sandbox, ticket: str) -> Answer:
    authenticate(sandbox)
    record = find_ticket(sandbox, ticket)
    limit, number = page_arguments()
    base = base_url()
    newest_first = [resources.message(m, base) for m in reversed(sandbox.messages_of(record["id"]))]
    return identified(sandbox, resources.page(newest_first, limit, number, base + request.path))


# --- clients ---


def list_clients(sandbox: Sandbox) -> Answer:
    """Clients newest first, filtered by ``filters[email][$eq]`` (case-insensitive) unless the
    sandbox ignores filters; any other filter is refused rather than silently ignored."""
    authenticate(sandbox)
    unsupported = [key for key in request.args if key.startswith("filters") and key != EMAIL_FILTER]
    if unsupported:
        raise Refused(invalid({key: [f"The sandbox filters clients by {EMAIL_FILTER} only."] for key in unsupported}))
    limit, number = page_arguments()
    email = request.args.get(EMAIL_FILTER)
    query = {} if email is None else {EMAIL_FILTER: email}
    found = sandbox.find_clients(None if sandbox.ignore_client_filter else email)
    users = [resources.user(client) for client in found]
    return identified(sandbox, resources.page(users, limit, number, base_url() + request.path, query))


def create_client(sandbox: Sandbox) -> Answer:
    """A new client; an email already taken (in any letter case) is a 422, as Laravel's unique rule answers."""
    authenticate(sandbox)
    body = read_json_object()
    errors = validate_client_request(body)
    if errors:
        raise Refused(invalid(errors))
    try:
        client = sandbox.create_client(body)
    except EmailTaken:
        raise Refused(invalid({"email": ["The email has already been taken."]})) from None
    return identified(sandbox, resources.user(client), 201)
