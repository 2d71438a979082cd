"""Only SPP_API_URL is ever called: URLs inside payloads (uploads, attachments, links) are data."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from bridge.runtime import get_runtime
from tests.conftest import deliver_all
from tests.providers import test_cloudmailin as cloudmailin
from tests.providers import test_jotform as jotform
from tests.providers import test_tally as tally
from tests.providers import test_typeform as typeform
from tests.providers.helpers import fixture


class Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        Counter.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def trap() -> Iterator[str]:
    """A server that records every request: nothing should ever reach it."""
    Counter.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_urls_in_payloads_are_never_fetched(make_app, sandbox, trap: str) -> None:
    app: Flask = make_app(
        f"""
        defaults: {{user_id: 1}}
        sources:
          quotes: {{kind: typeform, secret: {typeform.SECRET}}}
          mail: {{kind: cloudmailin, secret: "{cloudmailin.CREDENTIALS}"}}
          open: {{kind: json}}
          support: {{kind: tally, secret: {tally.SECRET}}}
          feedback: {{kind: jotform, secret: {jotform.TOKEN}}}
        """
    )
    upload = json.loads(fixture("typeform", "every_type.json"))
    for answer in upload["form_response"]["answers"]:
        if answer["type"] == "file_url":
            answer["file_url"] = f"{trap}/typeform-upload.pdf"
    body = json.dumps(upload).encode()
    assert f"{trap}/typeform-upload.pdf".encode() in body
    assert typeform.post(app, "quotes", body).status_code == 200

    mail = json.loads(fixture("cloudmailin", "reply.json"))
    mail["attachments"] = [{"file_name": "x.pdf", "content_type": "application/pdf", "size": 10, "url": f"{trap}/a"}]
    mail["plain"] = f"see {trap}/link and <img src='{trap}/pixel'>"
    assert cloudmailin.post(app, mail).status_code == 200

    request = json.loads(fixture("tally", "request.json"))
    for field in request["data"]["fields"]:
        if field["type"] == "FILE_UPLOAD":
            for upload in field["value"]:
                upload["url"] = f"{trap}/tally/{upload['name']}"
    assert tally.post(app, "support", json.dumps(request).encode()).status_code == 200

    posted = fixture("jotform", "posted_file.multipart").replace(b"https:\\/\\/www.jotform.com", trap.encode())
    assert trap.encode() in posted
    assert jotform.post(app, "feedback", "posted_file.multipart", body=posted).status_code == 200

    api = {"email": "alice@example.com", "message": f"{trap}/json", "callback_url": f"{trap}/callback"}
    assert app.test_client().post("/hooks/open", json=api).status_code == 200
    deliver_all(get_runtime(app))

    assert Counter.hits == []
    assert len(sandbox.sandbox.tickets) == 5
