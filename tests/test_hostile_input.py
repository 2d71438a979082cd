"""A corpus of malformed requests for every kind: each answer is a documented 4xx or a 200
within a second, never a 500.

Every case goes to ``/hooks/<source>`` (where the signature check answers first for most
kinds) and to ``/api/preview/<source>``, which skips the signature and so drives the parser
itself. The process must still answer ``/healthz`` afterwards. The email kinds also get a
corpus of pathological mail in their own framings (tests/providers/test_hostile_email.py).
"""

from __future__ import annotations

import json
import time

import pytest
from flask import Flask

from bridge.log import REDACTED, scrub_data
from bridge.message import Attachment, InboundMessage
from bridge.providers import PROVIDERS
from bridge.providers.base import MAX_JSON_DEPTH
from tests.conftest import admin_headers
from tests.providers.helpers import every_kind_sources

KINDS = tuple(PROVIDERS)
SOURCES = every_kind_sources()
MIB = 1024 * 1024

CASES = {
    "truncated json": (b'{"email": "a@b.c", "subject": "x', "application/json"),
    "truncated form": (b"email=a%40b.c&subject=%E2%82", "application/x-www-form-urlencoded"),
    "wrong content type": (b"<html></html>", "text/html"),
    "no content type": (b"{}", ""),
    "invalid utf-8 json": (b'{"subject": "\xff\xfe\xc3("}', "application/json"),
    "invalid utf-8 form": (b"subject=\xff\xfe&email=\xc3(", "application/x-www-form-urlencoded"),
    "multipart without boundary": (
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
        "multipart/form-data",
    ),
    "multipart wrong boundary": (
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
        "multipart/form-data; boundary=y",
    ),
    "deep nesting json": (b"[" * 50_000 + b"]" * 50_000, "application/json"),
    "deep nesting object": (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, "application/json"),
    "huge field json": (b'{"subject": "' + b"x" * (4 * MIB) + b'"}', "application/json"),
    "huge field form": (b"subject=" + b"x" * (4 * MIB), "application/x-www-form-urlencoded"),
    "not a message": (b"\x00\x01\x02 binary", "message/rfc822"),
    "header-like body": (
        b"From: a@b.c\r\nSubject: =?utf-8?b?=?=\r\nContent-Type: multipart/mixed\r\n\r\n--",
        "message/rfc822",
    ),
    "nan in json": (b'{"subject": NaN, "x": Infinity}', "application/json"),
    # deeper than scrubbing the sender's secret out of the fields could recurse (from 491 levels)
    "nesting 491 deep": (b'{"a":' * 491 + b'"x"' + b"}" * 491, "application/json"),
    "nesting 700 deep in a list": (b'{"a":' + b"[" * 700 + b"1" + b"]" * 700 + b"}", "application/json"),
    # parsed by json.loads, but storing it would recurse past Python's limit
    "nesting 935 deep": (b'{"a":' * 935 + b"1" + b"}" * 935, "application/json"),
    "nested json in form fields": (
        b"message-headers=%5B%5B%22a%22%2C"
        + b"%5B" * 900
        + b"%5D" * 900
        + b"%5D%5D&envelope="
        + b"%7B%22a%22%3A" * 900,
        "application/x-www-form-urlencoded",
    ),
    "nested json in multipart fields": (
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nFrom: a@example.com\r\n\r\nhi\r\n'
        + b'--b\r\nContent-Disposition: form-data; name="envelope"\r\n\r\n'
        + b'{"a":' * 900
        + b"1"
        + b"}" * 900
        + b"\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
    # address parsers recurse once per nested comment
    "deep parentheses in From": (b"From: " + b"(" * 487 + b"a@example.com\r\n\r\nHello\r\n", "message/rfc822"),
    "quadratic To": (b"From: a@example.com\r\nTo: " + b'"a",' * 50_000 + b"\r\n\r\nHello\r\n", "message/rfc822"),
}
DOCUMENTED_4XX = {400, 401, 413, 415, 422} | {provider.reject_status for provider in PROVIDERS.values()}


@pytest.fixture
def hostile_app(make_app) -> Flask:
    return make_app(SOURCES, BRIDGE_MAX_BODY_BYTES=str(6 * MIB))


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_requests_get_documented_answers(hostile_app: Flask, case: str) -> None:
    body, content_type = CASES[case]
    client = hostile_app.test_client()
    for kind in KINDS:
        for path, headers in ((f"/hooks/{kind}", {}), (f"/api/preview/{kind}", admin_headers())):
            started = time.perf_counter()
            response = client.post(path, data=body, headers={**headers, "Content-Type": content_type})
            elapsed = time.perf_counter() - started
            where = f"{case} -> {path}: {response.status_code} {response.get_data(as_text=True)[:200]}"
            assert response.status_code in DOCUMENTED_4XX or response.status_code == 200, where
            assert elapsed < 1.0, f"{where} took {elapsed:.2f} s"
            if response.status_code != 200:
                assert set(response.get_json()) >= {"error", "message"}, where
    assert client.get("/healthz").status_code == 200


def test_a_body_over_the_limit_is_413_for_every_kind(hostile_app: Flask) -> None:
    client = hostile_app.test_client()
    body = b"x" * (6 * MIB + 1)
    for kind in KINDS:
        for content_type in ("application/json", "application/x-www-form-urlencoded", "message/rfc822"):
            response = client.post(f"/hooks/{kind}", data=body, headers={"Content-Type": content_type})
            assert response.status_code == 413, (kind, content_type, response.status_code)
    assert client.get("/healthz").status_code == 200


def test_header_injection_is_not_echoed(hostile_app: Flask) -> None:
    client = hostile_app.test_client()
    for hostile in ("abc\tSet-Cookie: x=1", "a" * 500, "évènement", "<script>"):
        response = client.post("/hooks/json", json={}, headers={"X-Request-ID": hostile})
        assert response.headers["X-Request-ID"] != hostile
        assert "Set-Cookie" not in response.headers


def test_a_secret_deep_inside_the_json_is_scrubbed_and_stored(hostile_app: Flask) -> None:
    secret = PROVIDERS["json"].example_secret
    depth = MAX_JSON_DEPTH - 1
    body = '{"email": "a@example.com", "deep": ' + '{"a":' * depth + json.dumps(secret) + "}" * depth + "}"
    client = hostile_app.test_client()
    response = client.post(
        "/hooks/json", data=body, headers={"Content-Type": "application/json", "X-Bridge-Token": secret}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    event = client.get(f"/api/events/{response.get_json()['event_id']}", headers=admin_headers()).get_data(as_text=True)
    assert secret not in event and REDACTED in event
    too_deep = body.replace('{"a":', '{"a": {"a":', 1).replace("}", "}}", 1)
    response = client.post(
        "/hooks/json", data=too_deep, headers={"Content-Type": "application/json", "X-Bridge-Token": secret}
    )
    assert (response.status_code, response.get_json()["error"]) == (400, "bad_payload")
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in response.get_json()["message"]


def test_scrub_data_walks_any_depth_without_recursion() -> None:
    secret = "s3cret-value"
    deep: object = {"key " + secret: ["a " + secret, 1, None]}
    for level in range(20_000):
        deep = {"d": deep} if level % 2 else [deep, secret]
    scrubbed = scrub_data(deep, [secret])
    text = repr(_flatten(scrubbed))
    assert secret not in text and text.count(REDACTED) == 10_000 + 2
    message = InboundMessage(dedupe_key="k", fields={"deep": deep, "plain": secret})
    assert message.scrubbed([secret]).fields["plain"] == REDACTED


def test_an_echoed_secret_is_scrubbed_from_references_and_attachments_but_not_their_bytes() -> None:
    secret = "s3cret-value"
    attachment = Attachment(f"{secret}.pdf", "application/pdf", 3, url=f"https://x.example/{secret}", content=b"abc")
    message = InboundMessage(dedupe_key="k", references=[f"<{secret}@x>"], attachments=[attachment])
    scrubbed = message.scrubbed([secret])
    assert scrubbed.references == [f"<{REDACTED}@x>"]
    [file] = scrubbed.attachments
    assert (file.name, file.url, file.content) == (f"{REDACTED}.pdf", f"https://x.example/{REDACTED}", b"abc")


def test_scrub_data_copies_ordinary_data_exactly() -> None:
    data = {"b": [1, "x-s3cret", {"c": None, "d": [True, 2.5]}], "a": "s3cret", "e": {}, "f": []}
    assert scrub_data(data, ["s3cret"]) == {
        "b": [1, "x-[REDACTED]", {"c": None, "d": [True, 2.5]}],
        "a": "[REDACTED]",
        "e": {},
        "f": [],
    }
    assert list(scrub_data(data, ["s3cret"])) == ["b", "a", "e", "f"]
    assert scrub_data("a s3cret", ["s3cret"]) == "a [REDACTED]" and scrub_data(7, ["s3cret"]) == 7


def _flatten(value: object) -> list[object]:
    """Every key and leaf of nested dicts and lists, without recursion (repr would recurse)."""
    found: list[object] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            found.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        else:
            found.append(item)
    return found
