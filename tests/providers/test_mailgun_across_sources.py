"""A Mailgun signature is good for one source: sources sharing a signing key cannot replay each other's."""

from __future__ import annotations

from tests.conftest import AppFactory
from tests.providers.test_mailgun import SOURCES, event_count, event_id, post_form, posted, sign


def test_a_signed_post_replayed_to_another_source_is_refused(make_app: AppFactory) -> None:
    # two apps on one database stand for two web processes
    web_a, web_b = make_app(SOURCES), make_app(SOURCES)
    original = sign(posted("reply.json"))
    first = post_form(web_a, "support", original)
    assert first.status_code == 200, first.get_data(as_text=True)

    forged = {**original, "Message-Id": "<forged@attacker.example>", "body-plain": "Please refund me"}
    for fields in (original, forged):
        refused = post_form(web_b, "support-mime", fields)
        assert refused.status_code == 401, refused.get_data(as_text=True)
        assert refused.get_json()["error"] == "unauthorized"
        assert "already used at another source" in refused.get_json()["message"]
    assert event_count(web_a) == 1

    again = post_form(web_b, "support", original)  # Mailgun's retry to the source it was for
    assert again.get_json() == {"event_id": event_id(first), "status": "queued", "duplicate": True}
