"""bridge/spp_schema.py: StoreTicketRequest as SPP documents it (docs/spp-api.md)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.spp_schema import validate_ticket_request

FULL = {
    "user_id": 1,
    "subject": "Ticket subject",
    "status": 1,
    "employees": [3, 4],
    "tags": ["website", "api"],
    "order": "123456",
    "note": "Ticket note",
    "metadata": {"campaign": "spring", "bridge_event_id": "evt_1"},
}


def test_full_request_accepted() -> None:
    assert validate_ticket_request(FULL) == {}


def test_minimal_request_accepted() -> None:
    assert validate_ticket_request({"user_id": 1, "subject": "s"}) == {}


def test_empty_lists_and_metadata_accepted() -> None:
    assert validate_ticket_request({"user_id": 1, "subject": "s", "tags": [], "employees": [], "metadata": {}}) == {}


@pytest.mark.parametrize("missing", ["user_id", "subject"])
def test_required(missing: str) -> None:
    request = {k: v for k, v in FULL.items() if k != missing}
    assert validate_ticket_request(request) == {missing: ["Missing data for required field."]}


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "1", None, [1]])
def test_user_id_must_be_an_integer(value: Any) -> None:
    assert validate_ticket_request({**FULL, "user_id": value}) == {
        "user_id": ["Field may not be null." if value is None else "Not a valid integer."]
    }


@pytest.mark.parametrize("value", [True, 2.0, "2"])
def test_status_must_be_an_integer(value: Any) -> None:
    assert validate_ticket_request({**FULL, "status": value}) == {"status": ["Not a valid integer."]}


@pytest.mark.parametrize("value", ["", " ", "\n\t"])
def test_subject_blank_refused(value: str) -> None:
    assert validate_ticket_request({**FULL, "subject": value}) == {"subject": ["Must not be blank."]}


@pytest.mark.parametrize("value", [1, b"bytes", ["s"]])
def test_subject_must_be_a_string(value: Any) -> None:
    assert validate_ticket_request({**FULL, "subject": value}) == {"subject": ["Not a valid string."]}


def test_unknown_key_refused() -> None:
    assert validate_ticket_request({**FULL, "priority": "high"}) == {"priority": ["Unknown field."]}


@pytest.mark.parametrize("value", [1, None, True, ["a"], {"a": "b"}, b"x"])
def test_metadata_values_must_be_strings(value: Any) -> None:
    errors = validate_ticket_request({**FULL, "metadata": {"campaign": value}})
    assert list(errors) == ["metadata"]


def test_metadata_must_be_a_mapping() -> None:
    assert validate_ticket_request({**FULL, "metadata": ["a"]}) == {"metadata": ["Not a valid mapping type."]}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("employees", [1, "2"]),
        ("employees", [True]),
        ("employees", 3),
        ("tags", [1]),
        ("tags", "website"),
        ("order", 123456),
        ("note", None),
        ("note", b"x"),
    ],
)
def test_wrong_types_refused(key: str, value: Any) -> None:
    assert list(validate_ticket_request({**FULL, key: value})) == [key]


# --- property: exactly the documented keys, with their documented types ----------------------------

ALLOWED = ("user_id", "subject", "status", "employees", "tags", "order", "note", "metadata")
text = st.text(max_size=30)
optional = {
    "status": st.integers(),
    "employees": st.lists(st.integers(), max_size=5),
    "tags": st.lists(text, max_size=5),
    "order": text,
    "note": text,
    "metadata": st.dictionaries(text, text, max_size=5),
}
valid_requests = st.fixed_dictionaries(
    {"user_id": st.integers(), "subject": text.filter(lambda s: s.strip() != "")},
    optional=optional,
)
any_value = st.one_of(st.none(), st.booleans(), st.integers(), text, st.lists(text, max_size=2))


@settings(database=None)
@given(valid_requests)
def test_any_valid_request_validates(request: dict[str, Any]) -> None:
    assert validate_ticket_request(request) == {}


@settings(database=None)
@given(valid_requests, text.filter(lambda k: k not in ALLOWED), any_value)
def test_any_other_key_is_refused(request: dict[str, Any], key: str, value: Any) -> None:
    assert validate_ticket_request({**request, key: value}) == {key: ["Unknown field."]}
