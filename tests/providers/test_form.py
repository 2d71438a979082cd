"""``form``: an HTML form's multipart post with files, as a browser sends it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask

from tests.conftest import CLIENTS, AppFactory
from tests.providers.helpers import original, read_message, sha256, stored_event

SOURCES = CLIENTS + "sources:\n  contact:\n    kind: form\n"
FIELDS = {"email": "alice@example.com", "name": "Alice", "subject": "Damaged order", "message": "See the photo"}


def upload(data: bytes, filename: str, content_type: str | None = None) -> tuple[io.BytesIO, str, str | None]:
    return (io.BytesIO(data), filename, content_type)


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


def test_uploads_keep_their_bytes_name_and_type() -> None:
    data: dict[str, Any] = {
        **FIELDS,
        "invoice": upload(original("rechnung-4711.pdf"), "Rechnung März.pdf", "application/pdf"),
        "photos": [
            upload(original("lieferung.png"), "lieferung.png", "image/png"),
            upload(original("screenshot.png"), "screenshot.png", "image/png"),
        ],
    }
    message = read_message("form", data, "multipart/form-data")
    assert [(a.name, a.content_type, a.size, sha256(a.content)) for a in message.attachments] == [
        ("Rechnung März.pdf", "application/pdf", 2175, sha256(original("rechnung-4711.pdf"))),
        ("lieferung.png", "image/png", 69, sha256(original("lieferung.png"))),
        ("screenshot.png", "image/png", 1032, sha256(original("screenshot.png"))),
    ]


def test_a_file_input_left_empty_is_no_attachment(app: Flask) -> None:
    """Browsers post an empty file input as a part with no file name and no bytes."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nalice@example.com\r\n'
        b'--b\r\nContent-Disposition: form-data; name="message"\r\n\r\nno file this time\r\n'
        b'--b\r\nContent-Disposition: form-data; name="upload"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--b--\r\n"
    )
    assert read_message("form", body, "multipart/form-data; boundary=b").attachments == []
    response = app.test_client().post(
        "/hooks/contact",
        data=body,
        content_type="multipart/form-data; boundary=b",
        headers={"Accept": "application/json"},
    )
    assert stored_event(app, response.get_json()["event_id"])["message"]["attachments"] == []


def test_a_file_without_a_type_is_octet_stream(app: Flask) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nalice@example.com\r\n'
        b'--b\r\nContent-Disposition: form-data; name="upload"; filename="notes.bin"\r\n\r\n\x00\x01\x02\r\n--b--\r\n'
    )
    [file] = read_message("form", body, "multipart/form-data; boundary=b").attachments
    assert (file.name, file.content_type, file.content) == ("notes.bin", "application/octet-stream", b"\x00\x01\x02")


def test_uploads_are_listed_in_the_stored_message_without_their_bytes(app: Flask) -> None:
    data = {**FIELDS, "photo": upload(original("lieferung.png"), "Schaden Küche.png", "image/png")}
    response = app.test_client().post(
        "/hooks/contact", data=data, content_type="multipart/form-data", headers={"Accept": "application/json"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["attachments"] == [{"name": "Schaden Küche.png", "content_type": "image/png", "size": 69}]
