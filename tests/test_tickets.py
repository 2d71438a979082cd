"""bridge/tickets.py: InboundMessage + source -> StoreTicketRequest (docs/behaviour.md section 3)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.conversation import plan_delivery
from bridge.errors import MappingFailed
from bridge.message import Attachment, InboundMessage
from bridge.providers import PROVIDERS
from bridge.sources import SourcesConfig, load_sources
from bridge.spp_schema import validate_ticket_request
from bridge.tickets import NOTE_MAX_BYTES, lookup_client

RECEIVED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
TOP_CLIENTS = {"alice@example.com": 12, "@example.com": 13, "@bigcustomer.com": 30}


@pytest.fixture
def configure(tmp_path: Path) -> Any:
    """Write a sources file with one ``api`` json source and load it."""

    def make(
        ticket: dict[str, Any] | None = None,
        *,
        source_clients: dict[str, int] | None = None,
        clients: dict[str, int] | None = None,
        default: int | None = 1,
    ) -> SourcesConfig:
        source: dict[str, Any] = {"kind": "json", "ticket": ticket or {}}
        if source_clients is not None:
            source["clients"] = source_clients
        data: dict[str, Any] = {"clients": TOP_CLIENTS if clients is None else clients, "sources": {"api": source}}
        if default is not None:
            data["defaults"] = {"user_id": default}
        path = tmp_path / "sources.yml"
        path.write_text(yaml.safe_dump(data))
        return load_sources(str(path), PROVIDERS, {})

    return make


def message(**kw: Any) -> InboundMessage:
    values: dict[str, Any] = {
        "dedupe_key": "k",
        "email": "zed@nowhere.org",
        "name": "Zed",
        "subject": "Help",
        "body": "Hello",
    }
    return InboundMessage(**{**values, **kw})


def build(config: SourcesConfig, msg: InboundMessage | None = None, event_id: str | None = None) -> dict[str, Any]:
    request = ticket_of(config, msg, event_id)
    assert validate_ticket_request(request) == {}
    return request


def failure(config: SourcesConfig, msg: InboundMessage | None = None) -> MappingFailed:
    with pytest.raises(MappingFailed) as info:
        ticket_of(config, msg)
    return info.value


def ticket_of(config: SourcesConfig, msg: InboundMessage | None, event_id: str | None = None) -> dict[str, Any]:
    """The ticket request as the sources file alone maps it, the body in the note: what these
    tests are about (the look-up in SPP and the message are tests/test_conversations.py's)."""
    source = replace(config.sources["api"], client_lookup=False, message=False)
    return plan_delivery(msg or message(), source, config, RECEIVED, event_id).ticket_request


# --- user_id -------------------------------------------------------------------------------------


def test_literal_user_id_wins(configure: Any) -> None:
    config = configure({"user_id": 5}, source_clients={"alice@example.com": 40})
    assert build(config, message(email="alice@example.com"))["user_id"] == 5


@pytest.mark.parametrize("uid", ["77", " 77 ", 77])
def test_template_user_id_rendering_an_integer(configure: Any, uid: Any) -> None:
    config = configure({"user_id": "{{ fields.uid }}"}, source_clients={"alice@example.com": 40})
    assert build(config, message(email="alice@example.com", fields={"uid": uid}))["user_id"] == 77


@pytest.mark.parametrize("uid", ["", "abc", "1.5", "7 7", "0x10", "\u0661\u0662", "9" * 19, "9" * 5000])
def test_template_user_id_not_an_integer_falls_through(configure: Any, uid: str) -> None:
    config = configure({"user_id": "{{ fields.uid }}"}, source_clients={"alice@example.com": 40})
    assert build(config, message(email="alice@example.com", fields={"uid": uid}))["user_id"] == 40


def test_template_user_id_missing_field_falls_through(configure: Any) -> None:
    config = configure({"user_id": "{{ fields.uid }}"})
    assert build(config, message(email="alice@example.com"))["user_id"] == 12


SOURCE_CLIENTS = {"carol@partner.io": 40, "@example.com": 41}


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("carol@partner.io", 40),  # source exact
        ("alice@example.com", 41),  # source @domain beats top-level exact
        ("Bob@BigCustomer.COM", 30),  # top-level @domain, case-insensitive
        ("zed@nowhere.org", 1),  # defaults.user_id
    ],
)
def test_source_clients_come_before_top_level(configure: Any, email: str, expected: int) -> None:
    config = configure(source_clients=SOURCE_CLIENTS)
    assert build(config, message(email=email))["user_id"] == expected


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("ALICE@Example.com", 12),  # exact address before its @domain (13)
        (" alice@example.com ", 12),
        ("dave@example.com", 13),
        ("bob@bigcustomer.com", 30),
        ("bob@sub.bigcustomer.com", 1),  # a subdomain is another domain
        ("bigcustomer.com", 1),  # no '@': not an address
        ("@bigcustomer.com", 1),
        ("", 1),
        (None, 1),
    ],
)
def test_top_level_exact_then_domain_then_default(configure: Any, email: str | None, expected: int) -> None:
    assert build(configure(), message(email=email))["user_id"] == expected


def test_unresolved_user(configure: Any) -> None:
    err = failure(configure(default=None), message(email="zed@nowhere.org"))
    assert err.reason == "unresolved_user"
    assert err.detail == "no client matches zed@nowhere.org and the sources file sets no defaults.user_id"


def test_unresolved_user_without_email(configure: Any) -> None:
    err = failure(configure(default=None), message(email=None))
    assert err.reason == "unresolved_user"
    assert "a sender without an email address" in err.detail


def test_lookup_client() -> None:
    clients = {"alice@example.com": 12, "@example.com": 13}
    assert lookup_client(clients, "alice@example.com") == 12
    assert lookup_client(clients, "Alice@Example.com") == 12
    assert lookup_client(clients, "bob@example.com") == 13
    assert lookup_client(clients, "bob@other.com") is None
    assert lookup_client(clients, "example.com") is None
    assert lookup_client(clients, "bob@") is None
    assert lookup_client(clients, "") is None


# --- subject and note ----------------------------------------------------------------------------


def test_subject_template(configure: Any) -> None:
    assert build(configure({"subject": "Website: {{ subject }}"}))["subject"] == "Website: Help"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("  Help me  ", "Help me"), (None, "api submission"), ("", "api submission"), ("   ", "api submission")],
)
def test_subject_default(configure: Any, subject: str | None, expected: str) -> None:
    assert build(configure(), message(subject=subject))["subject"] == expected


def test_subject_template_rendering_empty_uses_message_subject(configure: Any) -> None:
    assert build(configure({"subject": "{{ fields.topic }}"}))["subject"] == "Help"


def test_default_note_has_sender_on_first_line(configure: Any) -> None:
    msg = message(name="Alice Smith", email="alice@example.com", body="Hello\nthere")
    assert build(configure(), msg)["note"] == "From: Alice Smith <alice@example.com>\n\nHello\nthere"


@pytest.mark.parametrize(
    ("name", "email", "body", "note"),
    [
        (None, "a@b.io", "Hi", "From: <a@b.io>\n\nHi"),
        ("Ann", None, "Hi", "From: Ann\n\nHi"),
        (None, None, " Hi ", "Hi"),
        ("Ann", "a@b.io", "", "From: Ann <a@b.io>"),
        ("Ann\nFrom: Mallory", "a@b.io", "Hi", "From: Ann From: Mallory <a@b.io>\n\nHi"),
    ],
)
def test_default_note_variants(configure: Any, name: str | None, email: str | None, body: str, note: str) -> None:
    assert build(configure(), message(name=name, email=email, body=body))["note"] == note


def test_no_note_when_nothing_to_say(configure: Any) -> None:
    assert "note" not in build(configure(), message(name=None, email=None, body="  "))


def test_note_template(configure: Any) -> None:
    assert build(configure({"note": "{{ name }} wrote: {{ body }}"}))["note"] == "Zed wrote: Hello"


def test_note_template_rendering_empty_is_left_out(configure: Any) -> None:
    assert "note" not in build(configure({"note": "{{ fields.missing }}"}))


# --- the note's size (docs/limits.md) ------------------------------------------------------------

CUT_LINE = "\n\n[cut at 64 KiB: the full message is in the bridge under event evt_1]"


def test_a_longer_note_is_cut_and_says_where_the_message_is(configure: Any) -> None:
    fits = "x" * (NOTE_MAX_BYTES - len("From: Zed <zed@nowhere.org>\n\n"))
    note = build(configure(), message(body=fits), "evt_1")["note"]
    assert len(note.encode()) == NOTE_MAX_BYTES and note.endswith("x")  # at the limit: whole
    note = build(configure(), message(body=fits + "y"), "evt_1")["note"]
    assert note.startswith("From: Zed <zed@nowhere.org>\n\nxxx")
    assert note.endswith(CUT_LINE)
    assert len(note.encode()) == NOTE_MAX_BYTES


def test_the_cut_falls_between_characters_and_keeps_the_attachment_list(configure: Any) -> None:
    msg = message(body="Grüße, 日本 🙂 " * 20_000, attachments=[Attachment("brief.pdf", "application/pdf", 2048)])
    note = build(configure(), msg, "evt_1")["note"]
    assert len(note.encode()) <= NOTE_MAX_BYTES
    assert note.endswith(f"{CUT_LINE}\n\nAttachments (not forwarded):\n- brief.pdf (2.0 kB)")
    kept = note.split(CUT_LINE)[0].removeprefix("From: Zed <zed@nowhere.org>\n\n")
    assert ("Grüße, 日本 🙂 " * 20_000).startswith(kept)
    assert len(kept.encode()) > NOTE_MAX_BYTES - 200


def test_a_note_template_is_capped_too(configure: Any) -> None:
    note = build(configure({"note": "{{ body }}{{ body }}"}), message(body="z" * NOTE_MAX_BYTES), "evt_1")["note"]
    assert note.endswith(CUT_LINE) and len(note.encode()) == NOTE_MAX_BYTES


def test_a_preview_says_the_message_is_kept_with_its_event(configure: Any) -> None:
    note = build(configure(), message(body="y" * (NOTE_MAX_BYTES + 1)))["note"]
    assert note.endswith("\n\n[cut at 64 KiB: the full message is in the bridge with its event once stored]")


# --- optional keys -------------------------------------------------------------------------------

OPTIONAL = {
    "status": "{{ fields.status }}",
    "order": "{{ fields.order_number }}",
    "tags": ["api", "{{ fields.tag }}", ""],
    "employees": [3, "{{ fields.emp }}"],
    "metadata": {"campaign": "{{ fields.utm }}", "fixed": 2},
}


def test_minimal_request(configure: Any) -> None:
    assert build(configure()) == {"user_id": 1, "subject": "Help", "note": "From: Zed <zed@nowhere.org>\n\nHello"}


def test_optional_keys_rendering_empty_are_left_out(configure: Any) -> None:
    request = build(configure(OPTIONAL), message(fields={"status": " ", "tag": ""}))
    assert request == {
        "user_id": 1,
        "subject": "Help",
        "note": "From: Zed <zed@nowhere.org>\n\nHello",
        "tags": ["api"],
        "employees": [3],
        "metadata": {"fixed": "2"},
    }


def test_everything_empty_leaves_out_the_keys(configure: Any) -> None:
    ticket = {"tags": ["{{ fields.t }}"], "employees": ["{{ fields.e }}"], "metadata": {"a": "{{ fields.a }}"}}
    assert set(build(configure(ticket))) == {"user_id", "subject", "note"}


def test_optional_keys_rendered(configure: Any) -> None:
    fields = {"status": "2", "order_number": 123456, "tag": "urgent", "emp": " 4 ", "utm": "spring"}
    request = build(configure(OPTIONAL), message(fields=fields))
    assert request["status"] == 2
    assert request["order"] == "123456"
    assert request["tags"] == ["api", "urgent"]
    assert request["employees"] == [3, 4]
    assert request["metadata"] == {"campaign": "spring", "fixed": "2"}


def test_literal_values(configure: Any) -> None:
    request = build(configure({"status": 1, "order": 42, "tags": [7], "employees": [3, 5]}))
    assert (request["status"], request["order"], request["tags"], request["employees"]) == (1, "42", ["7"], [3, 5])


@pytest.mark.parametrize("value", ["high", "1.5", "9" * 19, "9" * 5000])
def test_status_not_an_integer(configure: Any, value: str) -> None:
    err = failure(configure({"status": "{{ fields.status }}"}), message(fields={"status": value}))
    assert err.reason == "invalid_ticket_request"
    assert err.detail.startswith("ticket.status: ") and err.detail.endswith(" is not an integer")


def test_employee_not_an_integer(configure: Any) -> None:
    err = failure(configure({"employees": [3, "{{ fields.emp }}"]}), message(fields={"emp": "bob"}))
    assert (err.reason, err.detail) == ("invalid_ticket_request", "ticket.employees: 'bob' is not an integer")


def test_event_id_added_to_metadata(configure: Any) -> None:
    assert build(configure(), event_id="evt_1")["metadata"] == {"bridge_event_id": "evt_1"}
    request = build(configure({"metadata": {"campaign": "x"}}), event_id="evt_2")
    assert request["metadata"] == {"campaign": "x", "bridge_event_id": "evt_2"}


def test_event_id_overrides_a_configured_one(configure: Any) -> None:
    request = build(configure({"metadata": {"bridge_event_id": "forged"}}), event_id="evt_3")
    assert request["metadata"] == {"bridge_event_id": "evt_3"}


# --- template variables --------------------------------------------------------------------------

VARIABLES = {
    "email": "{{ email }}",
    "name": "{{ name }}",
    "subject": "{{ subject }}",
    "body": "{{ body }}",
    "html": "{{ html }}",
    "field": "{{ fields.plain }}",
    "nested": "{{ fields.customer.email }}",
    "nested_item": "{{ fields['customer']['email'] }}",
    "source": "{{ source }}",
    "message_id": "{{ message_id }}",
    "received_at": "{{ received_at }}",
    "attachment": "{{ attachments[0].name }}|{{ attachments[0].content_type }}|{{ attachments[0].size }}",
    "count": "{{ attachments | length }}",
}


def test_template_variables(configure: Any) -> None:
    msg = message(
        email="alice@example.com",
        name="Alice",
        subject="Subj",
        body="Body text",
        html="<p>Body</p>",
        fields={"plain": "p", "customer": {"email": "c@example.com"}},
        message_id="<m1@example.com>",
        attachments=[Attachment(name="a.pdf", content_type="application/pdf", size=1234), Attachment("b", "x/y", 1)],
    )
    assert build(configure({"metadata": VARIABLES}), msg)["metadata"] == {
        "email": "alice@example.com",
        "name": "Alice",
        "subject": "Subj",
        "body": "Body text",
        "html": "<p>Body</p>",
        "field": "p",
        "nested": "c@example.com",
        "nested_item": "c@example.com",
        "source": "api",
        "message_id": "<m1@example.com>",
        "received_at": "2024-05-06T07:08:09+00:00",
        "attachment": "a.pdf|application/pdf|1234",
        "count": "2",
    }


def test_missing_variables_render_empty(configure: Any) -> None:
    msg = InboundMessage(dedupe_key="k")
    ticket = {"metadata": {"a": "{{ fields.customer.email }}", "b": "{{ html }}{{ message_id }}{{ email }}"}}
    request = build(configure(ticket), msg)
    assert request == {"user_id": 1, "subject": "api submission"}


def test_a_list_answer_renders_as_text(configure: Any) -> None:
    ticket = {
        "subject": "Tally: {{ fields.problem }}",
        "tags": ["{{ fields.areas }}"],
        "metadata": {
            "areas": "{{ fields.areas }}",
            "slashed": "{{ fields.areas | join(' / ') }}",
            "numbers": "{{ fields.numbers }}",
            "first": "{{ fields.areas[0] }}",
            "count": "{{ fields.areas | length }}",
        },
    }
    fields = {"problem": ["Website down"], "areas": ["Billing", "DNS"], "numbers": [1, 2.5]}
    request = build(configure(ticket), message(fields=fields))
    assert request["subject"] == "Tally: Website down"
    assert request["tags"] == ["Billing, DNS"]
    assert request["metadata"] == {
        "areas": "Billing, DNS",
        "slashed": "Billing / DNS",
        "numbers": "1, 2.5",
        "first": "Billing",
        "count": "2",
    }


def test_html_is_not_escaped(configure: Any) -> None:
    request = build(configure({"note": "{{ body }}"}), message(body="<b>5 > 3 & 'x'</b>"))
    assert request["note"] == "<b>5 > 3 & 'x'</b>"


# --- security: sender data is data; templates stay in the sandbox ---------------------------------

INJECTIONS = ["{{ 7*7 }}", "{{ ''.__class__.__mro__ }}", "{% for x in range(3) %}x{% endfor %}", "${HOME}"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_sender_values_arrive_verbatim(configure: Any, evil: str) -> None:
    config = configure({"subject": "Website: {{ subject }}", "tags": ["{{ fields.tag }}"]})
    msg = message(subject=evil, name=evil, email=f"{evil}@x.io", body=evil, fields={"tag": evil})
    request = build(config, msg)
    assert request["subject"] == f"Website: {evil}"
    assert request["tags"] == [evil]
    assert "49" not in json.dumps(request) and "<class" not in json.dumps(request)


@pytest.mark.parametrize("evil", INJECTIONS)
def test_sender_values_verbatim_in_defaults(configure: Any, evil: str) -> None:
    request = build(configure(), message(subject=evil, name="Eve", email="eve@x.io", body=evil))
    assert request["subject"] == evil
    assert request["note"] == f"From: Eve <eve@x.io>\n\n{evil}"


REFUSED = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__ }}",
    "{% set x = fields.update({'a': 'changed'}) %}x",
    "{{ fields.update({'a': 'changed'}) }}",
    "{{ fields.pop('a') }}",
    "{{ fields.clear() }}",
    "{{ fields.setdefault('b', 1) }}",
    "{{ attachments.append(1) }}",
]


@pytest.mark.parametrize("template", REFUSED)
def test_sandbox_refuses_escape_and_mutation(configure: Any, template: str) -> None:
    fields = {"a": "original"}
    err = failure(configure({"subject": template}), message(fields=fields))
    assert err.reason == "template_error"
    assert err.detail.startswith("ticket.subject: SecurityError: access to attribute ")
    assert err.detail.endswith(" is unsafe.")
    assert fields == {"a": "original"}


SILENT = [
    "{{ fields.__class__ }}",
    "{{ ''.__class__ }}",
    "{{ fields.a.__class__.__mro__ }}",
    "{{ fields|attr('__class__') }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ self.__init__ }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ config }}{{ request }}{{ os }}",
]


@pytest.mark.parametrize("template", SILENT)
def test_unsafe_attributes_render_nothing(configure: Any, template: str) -> None:
    """Reading an unsafe attribute yields an undefined value, which renders as nothing."""
    request = build(configure({"subject": template, "metadata": {"probe": template}}), message(fields={"a": "x"}))
    assert request["subject"] == "Help"
    assert "metadata" not in request


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ '%(missing)s' % fields }}", "KeyError"),
        ("{{ '{missing}'.format(**fields) }}", "KeyError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ fields.a + 1 }}", "TypeError"),
        ("{{ fields.a|wordwrap(0) }}", "ValueError"),
    ],
)
def test_template_failing_on_sender_data_is_a_mapping_failure(configure: Any, template: str, error: str) -> None:
    err = failure(configure({"note": template}), message(fields={"a": "x"}))
    assert err.reason == "template_error"
    assert err.detail.startswith(f"ticket.note: {error}: ")


def test_template_error_names_the_metadata_entry(configure: Any) -> None:
    err = failure(configure({"metadata": {"campaign": "{{ 1 / 0 }}"}}))
    assert err.detail == "ticket.metadata.campaign: ZeroDivisionError: division by zero"


def test_range_is_bounded(configure: Any) -> None:
    err = failure(configure({"note": "{{ range(10**9)|list|length }}"}))
    assert err.reason == "template_error"
    assert "OverflowError" in err.detail
