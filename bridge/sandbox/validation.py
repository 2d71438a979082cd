"""Request rules read from SPP's API reference, kept apart from the bridge's own schema.

The sandbox exists to catch mistakes in ``bridge/spp_schema.py``, so it must not share it.
"""

from __future__ import annotations

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
