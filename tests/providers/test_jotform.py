"""``jotform``: multipart webhooks with ``rawRequest``, end to end from /hooks/<source> to the SPP sandbox.

The fixtures carry the test token in their ``webhookURL`` field, as Jotform echoes the URL
it posts to (``?token=`` is how the secret reaches us).
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from bridge.db import events
from bridge.providers.jotform import JotformProvider, derive_label
from bridge.runtime import get_runtime
from bridge.sources import Source
from tests.conftest import CLIENTS
from tests.providers.helpers import JSON_VALUES, deliver, fixture, stored_event, verify_then_parse

TOKEN = "jotform-test-token-3b7c90"  # also inside the fixtures' webhookURL
BOUNDARIES = {
    "every_type.multipart": "------------------------9f3KqW1zXvB7",
    "upload.multipart": "------------------------1WSA91c0mNqsH82UlEp0qj",
    "contact.multipart": "------------------------7Hq2Lm9Xc4Vb1Nz8",
    "posted_file.multipart": "------------------------Rk5Tn0Wq3Yb8Mz2Pd6",
}
# the two file parts of posted_file.multipart, byte for byte (a 1x1 PNG; text with CR LF, NUL and bytes not UTF-8)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
NOTES = "Zeilenenden\r\nbleiben: ä".encode() + b"\x00\xff\xfe\r\n"
UPLOADS = "https://www.jotform.com/uploads/kolanuvarun739/243615086540051/"
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  service:
    kind: jotform
    message: false
    secret: {TOKEN}
    honeypot: Website
    ticket:
      tags: [jotform]
      order: "{{{{ fields['Number Of'] }}}}"
  feedback:
    kind: jotform
    message: false
    secret: {TOKEN}
  contact:
    kind: jotform
    message: false
    secret: {TOKEN}
  contact_by_label:
    kind: jotform
    message: false
    secret: {TOKEN}
    name_field: contact person
    subject_field: Order Number
    body_field: Anything Else
  contact_by_key:
    kind: jotform
    message: false
    secret: {TOKEN}
    name_field: q10_contactPerson
    subject_field: q7_orderNumber
    body_field: q9_anythingElse
"""
)


def post(app: Flask, source: str, name: str, body: bytes | None = None, query: str = f"?token={TOKEN}", **headers):
    content_type = f"multipart/form-data; boundary={BOUNDARIES[name]}"
    return app.test_client().post(
        f"/hooks/{source}{query}",
        data=fixture("jotform", name) if body is None else body,
        content_type=headers.pop("content_type", content_type),
        headers=headers,
    )


def replace_raw(name: str, change) -> bytes:
    """The fixture with its rawRequest JSON edited by ``change(dict)``."""
    body = fixture("jotform", name).decode()
    head, rest = body.split('name="rawRequest"\r\n\r\n', 1)
    raw, tail = rest.split("\r\n", 1)
    data = json.loads(raw)
    change(data)
    return f'{head}name="rawRequest"\r\n\r\n{json.dumps(data)}\r\n{tail}'.encode()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(SOURCES)


def test_every_field_type(app: Flask, sandbox) -> None:
    response = post(app, "service", "every_type.multipart")
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "Service request",
        "note": "From: Katherine Johnson <katherine@bigcustomer.com>\n\n"
        "Full Name: Katherine Johnson\n"
        "Your Email: katherine@bigcustomer.com\n"
        "Phone Number: (555) 010-0199\n"
        "Address: 1 Orbit Way, Hampton, VA, 23666, United States\n"
        "Preferred Date: 2026-12-03\n"
        "Time: 10:30 AM\n"
        "Service Type: Maintenance\n"
        "Extras: Backups, Monitoring\n"
        "Budget: 1000-5000\n"
        "Satisfaction: 4\n"
        "Star Rating: 5\n"
        "Describe The: Our nightly backup fails.\nSee the attached log.\n"
        "Service Quality: Speed: Good, Support: Excellent\n"
        "Signature: [image/png data, not kept]\n"
        "Number Of: 3\n"
        "Upload Logs: https://www.jotform.com/uploads/kjohnson/253261234567890/6221904456789012345/backup.log\n\n"
        "Attachments (not forwarded):\n"
        "- backup.log (0 B)",
        "tags": ["jotform"],
        "order": "3",
        "metadata": {"bridge_event_id": event_id},
    }
    fields = stored_event(app, event_id)["message"]["fields"]
    assert fields["q10_extras"] == fields["Extras"] == ["Backups", "Monitoring"]
    assert "q19_table" not in fields and "q20_appointment" not in fields and "slug" not in fields


def test_file_upload_and_email_by_key(app: Flask, sandbox) -> None:
    response = post(app, "feedback", "upload.multipart")
    assert deliver(app, sandbox, response) == {
        "user_id": 12,
        "subject": "Feedback Form",
        "note": "From: <alice@example.com>\n\n"
        "How Often: Daily\n"
        "How Likely: 9\n"
        "Feedback: The new personalized recommendations feature is great!\n"
        "Email Address: alice@example.com\n"
        "Files Related: https://www.jotform.com/uploads/kolanuvarun739/243615086540051/6114090137116205381/"
        "frontend%20setup.jpg, "
        "https://www.jotform.com/uploads/kolanuvarun739/243615086540051/6114090137116205381/workflow.png\n\n"
        "Attachments (not forwarded):\n"
        "- frontend setup.jpg (0 B)\n"
        "- workflow.png (0 B)",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }
    # no name, subject or message question: no name, the form's title, every answer in order
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["name"] is None
    assert message["attachments"] == [
        {"name": name, "content_type": "", "size": 0, "url": f"{UPLOADS}6114090137116205381/{quoted}"}
        for name, quoted in (("frontend setup.jpg", "frontend%20setup.jpg"), ("workflow.png", "workflow.png"))
    ]


def test_full_name_subject_and_message_detected(app: Flask, sandbox) -> None:
    response = post(app, "contact", "contact.multipart")
    event_id = response.get_json()["event_id"]
    log = "https://www.jotform.com/uploads/kjohnson/253319876543210/6223301427159026114/import.log"
    body = (
        "Please restore the shop database from last night.\nToday's import broke the product list.\n\n"
        "Name: Katherine Johnson\n"
        "Email: katherine@bigcustomer.com\n"
        "Subject: Restore last night's backup\n"
        "Order Number: SO-2026-0311\n"
        "Anything Else: Call me after 3 pm.\n"
        "Contact Person: Dorothy Vaughan\n"
        f"Attach Logs: {log}"
    )
    ticket = deliver(app, sandbox, response)
    assert ticket["subject"] == "Restore last night's backup"
    assert ticket["note"].startswith(f"From: Katherine Johnson <katherine@bigcustomer.com>\n\n{body}\n\n")
    message = stored_event(app, event_id)["message"]
    assert (message["name"], message["body"]) == ("Katherine Johnson", body)
    assert message["attachments"] == [{"name": "import.log", "content_type": "", "size": 0, "url": log}]


def test_name_and_message_detected_by_unique_name(app: Flask, sandbox) -> None:
    """A plain text box whose unique name is ``fullName`` is a name; ``yourMessage`` a message."""

    def add(raw: dict) -> None:
        raw.update(q10_fullName="Alice Example", q11_yourMessage="Where is my invoice?")

    body = replace_raw("upload.multipart", add)
    response = post(app, "feedback", "upload.multipart", body=body)
    ticket = deliver(app, sandbox, response)
    assert ticket["subject"] == "Feedback Form"
    assert ticket["note"].startswith(
        "From: Alice Example <alice@example.com>\n\nWhere is my invoice?\n\nHow Often: Daily\n"
    )
    assert "Your Message" not in ticket["note"] and "Full Name: Alice Example\n" in ticket["note"]


@pytest.mark.parametrize("source", ["contact_by_label", "contact_by_key"])
def test_name_subject_and_body_fields_override_detection(app: Flask, sandbox, source: str) -> None:
    response = post(app, source, "contact.multipart")
    ticket = deliver(app, sandbox, response)
    assert ticket["subject"] == "SO-2026-0311"
    assert ticket["note"].startswith(
        "From: Dorothy Vaughan <katherine@bigcustomer.com>\n\n"
        "Call me after 3 pm.\n\n"
        "Name: Katherine Johnson\n"
        "Email: katherine@bigcustomer.com\n"
        "Subject: Restore last night's backup\n"
        "Message: Please restore the shop database from last night.\nToday's import broke the product list.\n"
        "Order Number: SO-2026-0311\n"
        "Contact Person: Dorothy Vaughan\n"
        "Attach Logs: "
    )


def test_posted_files_keep_their_bytes(app: Flask, sandbox) -> None:
    """File parts are attachments with their bytes; a file also listed by its link is not listed twice."""
    body = fixture("jotform", "posted_file.multipart")
    request = EnvironBuilder(
        method="POST", data=body, content_type=f"multipart/form-data; boundary={BOUNDARIES['posted_file.multipart']}"
    ).get_request()
    parsed = JotformProvider().parse(request, Source(name="feedback", kind="jotform", secret=TOKEN))
    assert [(a.name, a.content_type, a.size, a.content, a.url) for a in parsed.attachments] == [
        ("workflow.png", "image/png", len(PNG), PNG, None),
        ("notes.txt", "text/plain", len(NOTES), NOTES, None),
        ("frontend setup.jpg", "", 0, None, f"{UPLOADS}6114090137116209999/frontend%20setup.jpg"),
    ]

    response = post(app, "feedback", "posted_file.multipart")
    ticket = deliver(app, sandbox, response)
    assert ticket["note"].endswith(
        "Attachments (not forwarded):\n- workflow.png (70 B)\n- notes.txt (29 B)\n- frontend setup.jpg (0 B)"
    )
    event = stored_event(app, response.get_json()["event_id"])
    assert [a.get("url") for a in event["message"]["attachments"]] == [
        None,
        None,
        f"{UPLOADS}6114090137116209999/frontend%20setup.jpg",
    ]
    with get_runtime(app).store.engine.connect() as conn:
        raw_body = bytes(conn.execute(select(events.c.raw_body).where(events.c.id == event["id"])).scalar_one())
    # the file contents live only in the request, which is kept beside the message
    assert b"\r\n\r\n" + PNG + b"\r\n" in raw_body and b"\r\n\r\n" + NOTES + b"\r\n" in raw_body


def test_email_field_and_name_field_by_key_or_label(make_app, sandbox) -> None:
    fields = "    email_field: q8_emailAddress\n    name_field: How Often\n"
    app = make_app(SOURCES.replace("  feedback:\n", "  feedback:\n" + fields))
    ticket = deliver(app, sandbox, post(app, "feedback", "upload.multipart"))
    assert ticket["note"].startswith("From: Daily <alice@example.com>\n\nHow Often: Daily\n")


def test_an_email_key_without_an_address_is_not_the_sender(app: Flask, sandbox) -> None:
    body = replace_raw("upload.multipart", lambda raw: raw.update(q8_emailAddress="see phone"))
    ticket = deliver(app, sandbox, post(app, "feedback", "upload.multipart", body=body))
    assert ticket["user_id"] == 1
    assert ticket["note"].startswith("How Often: Daily\n")


def test_token_in_header_and_scrubbed_from_the_stored_body(app: Flask) -> None:
    response = post(app, "service", "every_type.multipart", query="", **{"X-Bridge-Token": TOKEN})
    assert response.status_code == 200
    with get_runtime(app).store.engine.connect() as conn:
        raw_body = conn.execute(select(events.c.raw_body)).scalar_one()
    assert TOKEN.encode() not in bytes(raw_body) and b"?token=[REDACTED]" in bytes(raw_body)


@pytest.mark.parametrize("query, headers", [("", {}), ("?token=wrong", {}), ("", {"X-Bridge-Token": "wrong"})])
def test_missing_or_wrong_token_is_401(app: Flask, query: str, headers: dict) -> None:
    response = post(app, "service", "every_type.multipart", query=query, **headers)
    assert response.status_code == 401


def test_same_submission_id_is_a_duplicate(app: Flask) -> None:
    first = post(app, "service", "every_type.multipart").get_json()
    edited = replace_raw("every_type.multipart", lambda raw: raw.update(q9_serviceType="Repair"))
    again = post(app, "service", "every_type.multipart", body=edited)
    assert again.get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}


@pytest.mark.parametrize(
    "old, new",
    [
        ('name="rawRequest"', 'name="somethingElse"'),
        ('name="submissionID"\r\n\r\n6221904456789012345', 'name="submissionID"\r\n\r\n'),
        ('name="submissionID"', 'name="submission"'),
    ],
)
def test_post_without_what_jotform_sends_is_422(app: Flask, old: str, new: str) -> None:
    body = fixture("jotform", "every_type.multipart").decode().replace(old, new).encode()
    response = post(app, "service", "every_type.multipart", body=body)
    assert response.status_code == 422
    assert response.get_json()["error"] == "unprocessable"


def test_raw_request_that_is_not_an_object_is_422(app: Flask) -> None:
    response = app.test_client().post(
        f"/hooks/service?token={TOKEN}", data={"rawRequest": "[1, 2]", "submissionID": "1"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("raw", ["{not json", '{"q1_a": NaN}', ""])
def test_raw_request_that_is_not_json_is_400(app: Flask, raw: str) -> None:
    response = app.test_client().post(f"/hooks/service?token={TOKEN}", data={"rawRequest": raw, "submissionID": "1"})
    assert response.status_code == 400


def test_wrong_content_type_is_415(app: Flask) -> None:
    response = post(app, "service", "every_type.multipart", content_type="application/json")
    assert response.status_code == 415


def test_filled_honeypot_is_discarded(app: Flask) -> None:
    body = replace_raw("every_type.multipart", lambda raw: raw.update(q21_website="http://spam.example"))
    response = post(app, "service", "every_type.multipart", body=body)
    assert response.get_json()["status"] == "discarded"


@pytest.mark.parametrize(
    "key, label",
    [
        ("q3_yourEmail", "Your Email"),
        ("q4_name", "Name"),
        ("q12_typeA", "Type A"),
        ("q5_input5", "Input 5"),
        ("q7_howLikelyAre7", "How Likely Are 7"),
        ("q8_fullName8", "Full Name 8"),
        ("q9_e_mail", "E Mail"),
        ("q10_nom", "Nom"),
        ("notAnAnswer", "Not An Answer"),
    ],
)
def test_labels_are_derived_from_the_unique_name(key: str, label: str) -> None:
    assert derive_label(key) == label


answer_keys = st.sampled_from(
    ["q1_email", "q2_name", "q3_date", "q4_x", "temp_upload", "x", "q5_yourEmail", "q6_message", "q7_subject"]
)
composite = st.dictionaries(
    st.sampled_from(
        [
            "first",
            "last",
            "month",
            "day",
            "year",
            "full",
            "area",
            "phone",
            "timeInput",
            "date",
            "duration",
            "city",
            "colIds",
            "ampm",
            "hour",
        ]
    ),
    st.text(max_size=5) | JSON_VALUES,
    max_size=4,
)
raw_requests = st.dictionaries(
    answer_keys, JSON_VALUES | composite | st.dictionaries(answer_keys, JSON_VALUES), max_size=6
)
SOURCE = Source(name="fuzz", kind="jotform", secret=TOKEN, email_field=None, options={"honeypot": "h"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=raw_requests,
    submission=st.text(max_size=300),
    title=st.text(max_size=10),
    name_field=st.none() | st.sampled_from(["q2_name", "Email"]),
    body_field=st.none() | st.sampled_from(["q6_message", "Subject", "x"]),
    files=st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=32), st.text(max_size=8)), max_size=2),
)
def test_parser_raises_only_bridge_errors(raw, submission, title, name_field, body_field, files) -> None:
    form = {"rawRequest": json.dumps(raw), "submissionID": submission, "formTitle": title}
    for index, (field, content, filename) in enumerate(files):
        form[f"{field}{index}"] = (io.BytesIO(content), filename)
    request = EnvironBuilder(method="POST", data=form, content_type="multipart/form-data").get_request()
    source = Source(
        name="fuzz",
        kind="jotform",
        secret=TOKEN,
        name_field=name_field,
        body_field=body_field,
        options={"honeypot": "h"},
    )
    verify_then_parse(JotformProvider(), request, source, verify_as=SOURCE)


@pytest.mark.parametrize("submission_id", ["s\u0000", "s" * 300])
def test_unstorable_or_long_submission_id_is_hashed_not_a_500(app: Flask, submission_id: str) -> None:
    form = {"rawRequest": json.dumps({"q1_text": "\ud800\u0000"}), "submissionID": submission_id}
    first = app.test_client().post(f"/hooks/feedback?token={TOKEN}", data=form)
    assert first.status_code == 200
    again = app.test_client().post(f"/hooks/feedback?token={TOKEN}", data=form)
    assert again.get_json()["event_id"] == first.get_json()["event_id"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_requests, submission=st.text(max_size=20), title=st.text(max_size=10))
def test_any_post_gets_a_documented_answer(app: Flask, raw: dict, submission: str, title: str) -> None:
    form = {"rawRequest": json.dumps(raw), "submissionID": submission, "formTitle": title}
    response = app.test_client().post(f"/hooks/service?token={TOKEN}", data=form)
    assert response.status_code in {200, 422}, response.get_data(as_text=True)
