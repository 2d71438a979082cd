"""A corpus of malformed requests for every kind: each answer is a documented 4xx, never a 500.

Every case goes to ``/hooks/<source>`` (where the signature check answers first for most
kinds) and to ``/api/preview/<source>``, which skips the signature and so drives the parser
itself. The process must still answer ``/healthz`` afterwards.
"""

from __future__ import annotations

import pytest
from flask import Flask

from bridge.providers import PROVIDERS
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
            response = client.post(path, data=body, headers={**headers, "Content-Type": content_type})
            where = f"{case} -> {path}: {response.status_code} {response.get_data(as_text=True)[:200]}"
            assert response.status_code in DOCUMENTED_4XX or response.status_code == 200, where
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
