"""Request rules read from SPP's API reference, kept apart from the bridge's own schema.

The sandbox exists to catch mistakes in ``bridge/spp_schema.py``, so it must not share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Errors = dict[str, list[str]]

# field -> (item type, container): None = a single value, list = array, dict = object
RULES: dict[str, tuple[str, type | None]] = {
    "user_id": ("integer", None),
    "subject": ("string", None),
    "status": ("integer", None),
    "employees": ("integer", list),
    "tags": ("string", list),
    "order": ("string", None),
    "note": ("string", None),
    "metadata": ("string", dict),
}
REQUIRED = ("user_id", "subject")
CONTAINER_NAMES: dict[type, str] = {list: "an array", dict: "an object of string values"}


def _is(kind: str, value: object) -> bool:
    if kind == "integer":
        return type(value) is int  # JSON true/false are bools and 1.0 is a float: not ints
    # Laravel's TrimStrings + ConvertEmptyStringsToNull middleware (on by default) turn
    # "" and "   " into null before validation, so SPP does not see them as strings.
    return isinstance(value, str) and value.strip() != ""


def _check(errors: Errors, key: str, value: Any) -> None:
    kind, container = RULES[key]
    if container is not None and not isinstance(value, container):
        errors[key] = [f"The {key} field must be {CONTAINER_NAMES[container]}."]
        return
    if container is None:
        items = {key: value}
    elif isinstance(value, dict):
        items = {f"{key}.{name}": item for name, item in value.items()}
    else:
        items = {f"{key}.{index}": item for index, item in enumerate(value)}
    for name, item in items.items():
        if not _is(kind, item):
            article = "an" if kind == "integer" else "a"
            errors[name] = [f"The {name.replace('_', ' ')} field must be {article} {kind}."]


def validate_ticket_request(body: dict[str, Any]) -> Errors:
    """Laravel-style errors (``{"employees.0": ["..."]}``); empty when the body is valid."""
    errors: Errors = {}
    for key in REQUIRED:
        value = body.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[key] = [f"The {key.replace('_', ' ')} field is required."]
    for key, value in body.items():
        if key not in RULES:
            errors[key] = [f"unknown field: {key!r} is not part of StoreTicketRequest."]
        elif key not in errors:
            _check(errors, key, value)
    return errors


def _required_text(errors: Errors, key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        errors[key] = [f"The {key.replace('_', ' ')} field is required."]
        return None
    if not isinstance(value, str):
        errors[key] = [f"The {key.replace('_', ' ')} field must be a string."]
        return None
    return value


# --- StoreMessageRequest: POST /api/ticket_messages/{ticket} ---

MESSAGE_FIELDS = ("message", "user_id", "staff_only")
FORM_BOOLEANS = {"1": True, "true": True, "0": False, "false": False}


@dataclass(frozen=True)
class MessageFields:
    message: str
    user_id: int | None
    staff_only: bool


def validate_message_json(body: dict[str, Any]) -> tuple[Errors, MessageFields | None]:
    """A JSON StoreMessageRequest: ``user_id`` a JSON integer, ``staff_only`` a JSON boolean.

    ``attachments`` cannot travel in JSON (the reference types them as binary), so a JSON body
    that carries them is refused rather than silently dropping files.
    """
    errors: Errors = {}
    text = _required_text(errors, "message", body.get("message"))
    user_id, staff_only = body.get("user_id"), body.get("staff_only", False)
    if user_id is not None and type(user_id) is not int:
        errors["user_id"] = ["The user id field must be an integer."]
    if type(staff_only) is not bool:
        errors["staff_only"] = ["The staff only field must be true or false."]
    for key in body:
        if key in ("attachments", "attachments[]"):
            errors[key] = ["Attachments must be sent as multipart/form-data file parts named attachments[]."]
        elif key not in MESSAGE_FIELDS:
            errors[key] = [f"unknown field: {key!r} is not part of StoreMessageRequest."]
    if errors or text is None:
        return errors, None
    return errors, MessageFields(text, user_id, staff_only)


def validate_message_form(
    fields: list[tuple[str, str]], files: list[tuple[str, str | None, str | None]]
) -> tuple[Errors, MessageFields | None]:
    """A multipart StoreMessageRequest: text ``fields`` (name, value) and file parts
    (name, filename, content type), in the order received.

    Form values are strings: ``user_id`` must be decimal digits and ``staff_only`` one of
    0, 1, true, false (what Laravel's integer and boolean rules take from a form). Files go in
    parts named ``attachments[]``, each with a file name and a content type; a text part of
    that name (a part without a file name) is not a file.
    """
    errors: Errors = {}
    values: dict[str, str] = {}
    attachments = 0
    for name, value in fields:
        if name == "attachments[]":
            errors[f"attachments.{attachments}"] = [f"The attachments.{attachments} field must be a file."]
            attachments += 1
        elif name in MESSAGE_FIELDS:
            values[name] = value  # a repeated field: the last one counts, as in PHP
        else:
            errors[name] = [f"unknown field: {name!r} is not part of StoreMessageRequest."]
    for name, filename, content_type in files:
        if name == "attachments[]":
            if not filename or not content_type:
                errors[f"attachments.{attachments}"] = [
                    f"The attachments.{attachments} field must be a file with a name and a content type."
                ]
            attachments += 1
        elif name == "attachments":
            errors[name] = ["The attachments field must be an array: name each file part attachments[]."]
        else:
            errors[name] = [f"unknown field: {name!r} is not part of StoreMessageRequest."]
    text = _required_text(errors, "message", values.get("message"))
    raw_user = values.get("user_id", "").strip()
    if raw_user and not (raw_user.isascii() and raw_user.isdigit()):
        errors["user_id"] = ["The user id field must be an integer."]
    raw_staff = values.get("staff_only", "").strip()
    if raw_staff and raw_staff not in FORM_BOOLEANS:
        errors["staff_only"] = ["The staff only field must be true or false."]
    if errors or text is None:
        return errors, None
    return errors, MessageFields(text, int(raw_user) if raw_user else None, FORM_BOOLEANS.get(raw_staff, False))


# --- StoreUserRequest: POST /api/clients ---

CLIENT_STRINGS = ("name_f", "name_l", "email", "company", "phone", "tax_id", "note", "optin", "stripe_id", "created_at")
ADDRESS_FIELDS = ("line_1", "line_2", "city", "state", "postcode", "country")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def valid_email(value: str) -> bool:
    return len(value) <= 254 and EMAIL.fullmatch(value) is not None


def validate_client_request(body: dict[str, Any]) -> Errors:
    """Laravel-style errors for a new client; empty when valid.

    The reference marks no field required; the sandbox requires ``email`` (a client is found
    and signs in by it). Whether the email is taken is checked when the client is stored.
    """
    errors: Errors = {}
    for key, value in body.items():
        if key in CLIENT_STRINGS:
            if not _is("string", value):
                errors[key] = [f"The {key.replace('_', ' ')} field must be a string."]
        elif key == "balance":
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors[key] = ["The balance field must be a number."]
        elif key == "status_id":
            if type(value) is not int:
                errors[key] = ["The status id field must be an integer."]
        elif key == "custom_fields":
            if not isinstance(value, dict):
                errors[key] = ["The custom fields field must be an object."]
        elif key == "address":
            if not isinstance(value, dict):
                errors[key] = ["The address field must be an object."]
                continue
            for part, item in value.items():
                if part not in ADDRESS_FIELDS:
                    errors[f"address.{part}"] = [f"unknown field: {part!r} is not part of an address."]
                elif not _is("string", item):
                    errors[f"address.{part}"] = [f"The address.{part} field must be a string."]
        else:
            errors[key] = [f"unknown field: {key!r} is not part of StoreUserRequest."]
    email = body.get("email")
    if email is None or (isinstance(email, str) and not email.strip()):
        errors["email"] = ["The email field is required."]
    elif "email" not in errors and not valid_email(email):
        errors["email"] = ["The email field must be a valid email address."]
    return errors
