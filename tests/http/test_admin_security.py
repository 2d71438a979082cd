"""Admin sign-in: a session key of the database's, Secure cookies and HSTS over HTTPS, sign-out that
revokes, and wrong tokens throttled per client address across processes."""

from __future__ import annotations

import hashlib
import hmac
import threading

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from itsdangerous import BadSignature
from sqlalchemy import select

from bridge.db import app_secrets
from bridge.http.throttle import MAX_FAILURES, WINDOW_SECONDS
from bridge.runtime import get_runtime
from tests.conftest import ADMIN_TOKEN, AppFactory
from tests.http.test_admin_page import csrf, page, signed_in

ATTACKER, OPERATOR = "203.0.113.5", "198.51.100.7"


def anonymous_cookie(app: Flask) -> str:
    """The session cookie anyone gets from the sign-in page (it holds the form's CSRF token)."""
    client = app.test_client()
    client.get("/admin/sign-in")
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def opens_with(key: str, cookie: str) -> bool:
    probe = Flask("probe")
    probe.secret_key = key
    serializer = SecureCookieSessionInterface().get_signing_serializer(probe)
    assert serializer is not None
    try:
        serializer.loads(cookie)
    except BadSignature:
        return False
    return True


def from_address(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_the_session_key_is_random_kept_in_the_database_and_shared(make_app: AppFactory) -> None:
    app = make_app()
    cookie = anonymous_cookie(app)
    # a key derived from the token would let the cookie confirm or refute any guess of the token offline
    derived = hmac.new(ADMIN_TOKEN.encode(), b"spp-ticket-bridge admin session", hashlib.sha256).hexdigest()
    assert not opens_with(derived, cookie)
    with get_runtime(app).store.engine.connect() as conn:
        [stored] = conn.execute(select(app_secrets.c.value)).scalars().all()
    assert len(stored) >= 64 and ADMIN_TOKEN not in stored
    assert opens_with(stored, cookie)

    other_process = make_app()  # another process on the same database signs with the same key
    client = other_process.test_client()
    client.set_cookie("session", signed_in(app).get_cookie("session").value)  # type: ignore[union-attr]
    assert client.get("/admin/").status_code == 200

    chosen = make_app(SECRET_KEY="an-operator-chosen-secret-key")
    assert opens_with("an-operator-chosen-secret-key", anonymous_cookie(chosen))


def test_processes_making_the_key_at_once_agree_on_it(make_app: AppFactory) -> None:
    stores = [get_runtime(make_app()).store.access for _ in range(2)]
    keys: list[str] = []
    threads = [threading.Thread(target=lambda s=s: keys.append(s.secret("race"))) for s in stores * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(keys) == 8 and len(set(keys)) == 1


def test_https_answers_carry_secure_cookies_and_hsts(app: Flask) -> None:
    secure = app.test_client().get("/admin/sign-in", headers={"X-Forwarded-Proto": "https"})
    assert "; Secure" in secure.headers["Set-Cookie"]
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"

    plain = app.test_client().get("/admin/sign-in")
    assert "Secure" not in plain.headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in plain.headers


def test_a_cookie_copied_before_sign_out_is_refused_after_it(make_app: AppFactory) -> None:
    app, other_process = make_app(), make_app()
    client = signed_in(app)
    copy = client.get_cookie("session")
    assert copy is not None
    token = csrf(page(client, "/admin/"), "signout-csrf_token")
    assert client.post("/admin/sign-out", data={"signout-csrf_token": token}).status_code == 303
    for where in (app, other_process):
        thief = where.test_client()
        thief.set_cookie("session", copy.value)
        answer = thief.get("/admin/")
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/admin/sign-in")
    assert page(signed_in(app), "/admin/")  # signing in again is a new session


def sign_in_attempt(client: FlaskClient, token: str) -> tuple[int, str | None, str]:
    form_token = csrf(page(client, "/admin/sign-in"))
    answer = client.post("/admin/sign-in", data={"csrf_token": form_token, "token": token})
    return answer.status_code, answer.headers.get("Retry-After"), answer.get_data(as_text=True)


def test_wrong_sign_ins_are_throttled_per_address_in_every_process(make_app: AppFactory) -> None:
    app, other_process = make_app(), make_app()
    attacker = from_address(app, ATTACKER)
    for _ in range(MAX_FAILURES):
        assert sign_in_attempt(attacker, "a-wrong-guess")[0] == 401
    # the right token too: a different answer would tell a right guess from a wrong one
    status, retry_after, html = sign_in_attempt(from_address(other_process, ATTACKER), ADMIN_TOKEN)
    assert status == 429 and "Too many wrong tokens" in html
    assert retry_after is not None and 0 < int(retry_after) <= WINDOW_SECONDS
    assert sign_in_attempt(from_address(other_process, OPERATOR), ADMIN_TOKEN)[0] == 303


def test_wrong_bearer_tokens_are_throttled_on_the_api_and_metrics(make_app: AppFactory) -> None:
    app, other_process = make_app(), make_app()
    right, wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": "Bearer a-wrong-guess"}
    attacker = from_address(app, ATTACKER)
    for _ in range(MAX_FAILURES - 1):
        assert attacker.get("/api/events", headers=wrong).status_code == 401
    assert attacker.get("/api/events", headers=right).status_code == 200  # the right token clears the count
    for _ in range(MAX_FAILURES - 1):
        assert attacker.get("/api/events", headers=wrong).status_code == 401
    metrics = from_address(other_process, ATTACKER)
    assert metrics.get("/metrics", headers=wrong).status_code == 401
    for client, url in ((metrics, "/metrics"), (attacker, "/api/events")):
        refused = client.get(url, headers=right)
        assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_attempts"
        assert 0 < int(refused.headers["Retry-After"]) <= WINDOW_SECONDS
    operator = from_address(other_process, OPERATOR)
    assert all(operator.get("/api/events", headers=right).status_code == 200 for _ in range(3 * MAX_FAILURES))
