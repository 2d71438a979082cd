"""``GET /``: the newcomer who opens the printed URL lands on the admin page, or learns how to turn it on."""

from __future__ import annotations

from flask import Flask

from tests.conftest import AppFactory


def test_the_front_door_leads_to_the_admin_page(app: Flask) -> None:
    answer = app.test_client().get("/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/admin/events"
    assert app.test_client().get("/", follow_redirects=True).request.path == "/admin/sign-in"


def test_without_an_admin_token_it_says_how_to_turn_the_page_on(make_app: AppFactory) -> None:
    answer = make_app(BRIDGE_ADMIN_TOKEN="").test_client().get("/")
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    assert "set BRIDGE_ADMIN_TOKEN" in answer.get_data(as_text=True)
    assert "POST /hooks/<source>" in answer.get_data(as_text=True)
