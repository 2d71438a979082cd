"""Alerts (docs/operations.md, Alerts): notifications through apprise to a real receiver on loopback.

apprise's ``json://`` posts each notification to a ``http.server`` in a thread, which records it.
Events fail for real (the sandbox answers 422, or refuses the token); "another process" is a
second app on the same database. The store parts run on SQLite and on PostgreSQL (``make_app``).
"""

from __future__ import annotations

import logging
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from bridge.alerts import EVERY_SECONDS, WINDOW_SECONDS, Alerts
from bridge.chores import Chores
from bridge.db import alert_state, alerted_failures, events
from bridge.runtime import get_runtime
from bridge.status import Status
from config.settings import ConfigError, load_settings
from tests.conftest import ADMIN_TOKEN, API_SECRET, DEFAULT_SOURCES, SPP_TOKEN, admin_headers, bridge_env, deliver_all
from tests.helpers import ALERT_PASSWORD, BIN, NO_DOTENV, ROOT, Receiver, free_port
from tests.http.test_metrics import scrape, value
from tests.test_worker import BODY, event, post

PUBLIC_URL = "https://bridge.example.com"
LATER = timedelta(seconds=WINDOW_SECONDS + 1)
RECENT = datetime(2000, 1, 1, tzinfo=UTC)  # every failure a test makes is later


@pytest.fixture
def alerting(make_app, receiver: Receiver) -> Any:
    """An app whose alerts go to ``receiver``."""

    def factory(**env: str) -> Flask:
        return make_app(BRIDGE_ALERT_URLS=receiver.url, BRIDGE_PUBLIC_URL=PUBLIC_URL, **env)

    return factory


def fail_events(app: Flask, sandbox, n: int) -> list[str]:
    """``n`` events that SPP refuses (422): failed after one attempt."""
    runtime = get_runtime(app)
    sandbox.sandbox.script(*([422] * n))
    ids = [post(app, {**BODY, "message": f"request {i} {datetime.now(UTC).isoformat()}"}) for i in range(n)]
    deliver_all(runtime)
    assert [event(runtime, i)["status"] for i in ids] == [Status.FAILED] * n
    return ids


def test_a_failure_is_told_at_once_later_ones_together_after_the_window(alerting, sandbox, receiver) -> None:
    app = alerting(BRIDGE_DELIVERY_CONCURRENCY="1")  # the events fail in the order they came
    runtime = get_runtime(app)
    alerts = runtime.alerts()
    [first] = fail_events(app, sandbox, 1)
    now = datetime.now(UTC)
    alerts.run(now)
    [told] = receiver.posts
    assert first in told["title"] and first in told["message"]
    assert "'api'" in told["message"] and "422" in told["message"]
    assert f"{PUBLIC_URL}/admin/events?status=failed" in told["message"]

    more = fail_events(app, sandbox, 3)
    for seconds in (0, EVERY_SECONDS, 14 * 60):  # the window: no notification, whichever turn
        alerts.run(now + timedelta(seconds=seconds))
    assert len(receiver.posts) == 1

    alerts.run(now + LATER)
    assert len(receiver.posts) == 2
    folded = receiver.posts[1]
    assert folded["title"] == "spp-ticket-bridge: 3 events failed"
    assert "sources: api" in folded["message"] and f"Latest: event {more[-1]}" in folded["message"]
    assert first not in folded["message"]

    alerts.run(now + 3 * LATER)  # nothing new: nothing sent
    assert len(receiver.posts) == 2


def test_the_window_is_injectable_and_kept_per_kind(alerting, sandbox, receiver) -> None:
    app = alerting(BRIDGE_ALERT_QUEUE_AGE_SECONDS="60")
    runtime = get_runtime(app)
    alerts = runtime.alerts(window_seconds=30)
    fail_events(app, sandbox, 1)
    now = datetime.now(UTC)
    alerts.run(now)
    fail_events(app, sandbox, 1)
    post(app, {**BODY, "message": "waiting"})  # due, nobody delivers it
    alerts.run(now + timedelta(seconds=90))  # past 30 s: the new failure; and the queue is 90 s old
    titles = [p["title"] for p in receiver.posts]
    assert titles[0].startswith("spp-ticket-bridge: event ") and titles[1].startswith("spp-ticket-bridge: event ")
    assert titles[2:] == ["spp-ticket-bridge: delivery is behind"]


def test_two_processes_at_once_send_one_notification(alerting, sandbox, receiver) -> None:
    apps = [alerting(), alerting()]  # two processes on one database
    every = [get_runtime(a).alerts() for a in apps * 3]  # and three chores threads in each
    fail_events(apps[0], sandbox, 1)
    now = datetime.now(UTC)
    start = threading.Barrier(len(every))

    def turn(alerts: Alerts) -> None:
        start.wait()
        alerts.run(now)

    threads = [threading.Thread(target=turn, args=(a,)) for a in every]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(receiver.posts) == 1
    for alerts in every:
        alerts.run(now + timedelta(seconds=EVERY_SECONDS))
    assert len(receiver.posts) == 1


def test_a_failure_during_the_window_is_told_by_whichever_process_comes_next(alerting, sandbox, receiver) -> None:
    app, other = alerting(), alerting()
    fail_events(app, sandbox, 1)
    now = datetime.now(UTC)
    get_runtime(app).alerts().run(now)
    late = fail_events(other, sandbox, 1)
    get_runtime(app).alerts().run(now + LATER)  # a new chore object: the state is the database's
    get_runtime(other).alerts().run(now + LATER)
    assert len(receiver.posts) == 2 and late[0] in receiver.posts[1]["title"]


def test_a_replayed_event_that_fails_again_is_told_again(alerting, sandbox, receiver) -> None:
    app = alerting()
    runtime = get_runtime(app)
    [event_id] = fail_events(app, sandbox, 1)
    now = datetime.now(UTC)
    runtime.alerts().run(now)
    sandbox.sandbox.script(422)
    assert app.test_client().post(f"/api/events/{event_id}/replay", headers=admin()).status_code == 200
    deliver_all(runtime)
    assert event(runtime, event_id)["status"] == Status.FAILED
    runtime.alerts().run(now + LATER)
    assert [event_id in p["title"] for p in receiver.posts] == [True, True]


def test_the_queue_age_alert(alerting, receiver) -> None:
    app = alerting(BRIDGE_ALERT_QUEUE_AGE_SECONDS="600")
    alerts = get_runtime(app).alerts()
    post(app)
    post(app, {**BODY, "message": "another"})
    now = datetime.now(UTC)
    alerts.run(now + timedelta(seconds=300))
    assert receiver.posts == []  # 5 minutes: within the threshold
    alerts.run(now + timedelta(seconds=1300))
    [told] = receiver.posts
    assert told["title"] == "spp-ticket-bridge: delivery is behind"
    assert "2 event(s) are due" in told["message"] and "waiting for 21 min" in told["message"]
    assert f"{PUBLIC_URL}/admin/events" in told["message"]
    alerts.run(now + timedelta(seconds=1300) + timedelta(minutes=5))
    assert len(receiver.posts) == 1  # still behind, but within the window


def test_the_token_alert_while_spp_refuses_the_token(alerting, sandbox, receiver) -> None:
    app = alerting()
    runtime = get_runtime(app)
    sandbox.sandbox.script(401)
    post(app)
    deliver_all(runtime)
    assert runtime.store.queue.pause() is not None
    runtime.alerts().run(datetime.now(UTC))
    [told] = receiver.posts
    assert told["title"] == "spp-ticket-bridge: SPP refuses the API token"
    assert "(HTTP 401)" in told["message"] and "1 event(s) are waiting" in told["message"]
    assert f"See {PUBLIC_URL}/admin." in told["message"]


def test_while_paused_the_queue_alert_leaves_it_to_the_token_alert(alerting, sandbox, receiver) -> None:
    app = alerting(BRIDGE_ALERT_QUEUE_AGE_SECONDS="60")
    runtime = get_runtime(app)
    sandbox.sandbox.script(401)
    post(app)
    deliver_all(runtime)
    runtime.alerts().run(datetime.now(UTC) + timedelta(seconds=120))
    assert [p["title"] for p in receiver.posts] == ["spp-ticket-bridge: SPP refuses the API token"]


def test_nothing_to_tell_sends_nothing(alerting, sandbox, receiver) -> None:
    app = alerting()
    post(app)
    deliver_all(get_runtime(app))
    get_runtime(app).alerts().run(datetime.now(UTC))
    assert receiver.requests == 0


def test_a_receiver_that_is_down_gets_it_at_the_next_turn(alerting, sandbox, receiver, caplog) -> None:
    app = alerting()
    runtime = get_runtime(app)
    alerts = runtime.alerts()
    [event_id] = fail_events(app, sandbox, 1)
    receiver.status = 503
    now = datetime.now(UTC)
    with caplog.at_level(logging.DEBUG):
        alerts.run(now)
    assert receiver.requests >= 1 and receiver.posts == []
    assert [f.event_id for f in runtime.store.alerts.failures(alerts.targets[0].key, RECENT)] == [
        event_id
    ]  # not marked
    with runtime.store.engine.connect() as conn:
        assert conn.execute(select(alert_state.c.next_at).where(alert_state.c.kind == "failed")).scalar() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("did not take the notification" in w for w in warnings)
    assert not [r for r in caplog.records if r.name.startswith("apprise")]
    assert ALERT_PASSWORD not in caplog.text and receiver.url not in caplog.text
    assert value(scrape(app), "bridge_alerts_sent_total", kind="failed", result="failed") >= 1

    receiver.status = 200
    alerts.run(now + timedelta(seconds=EVERY_SECONDS))
    [told] = receiver.posts
    assert event_id in told["title"]
    assert runtime.store.alerts.failures(alerts.targets[0].key, RECENT) == []


def test_a_receiver_that_is_not_listening_is_a_failed_send_too(make_app, sandbox) -> None:
    app = make_app(BRIDGE_ALERT_URLS=f"json://127.0.0.1:{free_port()}/alerts")
    runtime = get_runtime(app)
    alerts = runtime.alerts()
    fail_events(app, sandbox, 1)
    alerts.run(datetime.now(UTC))
    assert len(runtime.store.alerts.failures(alerts.targets[0].key, RECENT)) == 1


def test_no_secret_in_any_notification(alerting, sandbox, receiver) -> None:
    app = alerting(BRIDGE_ALERT_QUEUE_AGE_SECONDS="1")
    runtime = get_runtime(app)
    [event_id] = fail_events(app, sandbox, 1)
    secrets = [SPP_TOKEN, ADMIN_TOKEN, API_SECRET, ALERT_PASSWORD, receiver.url]
    with runtime.store.engine.begin() as conn:  # a reason that quotes every secret
        conn.execute(update(events).where(events.c.id == event_id).values(last_error="echo: " + " ".join(secrets)))
    sandbox.sandbox.script(401)
    post(app)
    deliver_all(runtime)  # paused: the token alert
    now = datetime.now(UTC) + timedelta(seconds=5)
    runtime.alerts().run(now)
    assert len(receiver.posts) == 2
    sent = "\n".join(receiver.texts())
    assert "echo: [REDACTED]" in sent
    for secret in secrets:
        assert secret not in sent


def test_the_chore_runs_only_with_alert_urls(make_app, alerting, sandbox, receiver) -> None:
    assert [chore.name for chore in get_runtime(make_app()).chores()] == ["retention"]
    app = alerting()
    [chore] = [chore for chore in get_runtime(app).chores() if chore.name != "retention"]
    assert chore.name == "alerts" and chore.every_seconds <= 20  # a failure is told within a minute
    [event_id] = fail_events(app, sandbox, 1)
    Chores([chore]).run_due()
    assert event_id in receiver.posts[0]["title"]


def test_the_alert_urls_are_secrets_of_the_runtime(alerting, receiver) -> None:
    secrets = get_runtime(alerting()).secrets()
    assert receiver.url in secrets and ALERT_PASSWORD in secrets


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --- alert-test ---------------------------------------------------------------------------------


def test_alert_test_sends_to_every_target_and_names_each_without_secrets(make_app, receiver) -> None:
    down = f"json://bridge:{ALERT_PASSWORD}@127.0.0.1:{free_port()}/alerts"
    app = make_app(BRIDGE_ALERT_URLS=f"{receiver.url}, {down}")
    result = app.test_cli_runner().invoke(args=["bridge", "alert-test"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].split() == [f"json://127.0.0.1:{receiver.server.server_port}", "ok"]
    assert lines[1].split() == [f"json://127.0.0.1:{down.rsplit(':', 1)[1].split('/')[0]}", "failed"]
    assert lines[2] == "1 of 2 target(s) took the test notification"
    assert ALERT_PASSWORD not in result.output
    [told] = receiver.posts
    assert told["title"] == "spp-ticket-bridge: test notification"

    good = make_app(BRIDGE_ALERT_URLS=receiver.url).test_cli_runner().invoke(args=["bridge", "alert-test"])
    assert good.exit_code == 0 and len(receiver.posts) == 2


def test_alert_test_without_targets_says_so(make_app) -> None:
    result = make_app().test_cli_runner().invoke(args=["bridge", "alert-test"])
    assert result.exit_code == 1
    assert "BRIDGE_ALERT_URLS is not set" in result.output


# --- start-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "nosuchscheme://user:topsecret-123@example.com/x",
        "slack://topsecret-123",  # a scheme apprise knows, without the parts it needs
        "json://example.com, topsecret-123",  # text that is no URL
    ],
)
def test_an_alert_url_apprise_cannot_use_stops_start_up(raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"BRIDGE_ALERT_URLS": raw})
    assert str(refused.value).startswith("BRIDGE_ALERT_URLS: ")
    assert "topsecret" not in str(refused.value)


def test_alert_urls_are_separated_by_commas_or_spaces() -> None:
    raw = "json://a.example.com/x,  mailto://u:p@example.com?to=a@example.org,b@example.org slack://T1/A2/B3C4"
    assert load_settings({"BRIDGE_ALERT_URLS": raw}).alert_urls == (
        "json://a.example.com/x",
        "mailto://u:p@example.com?to=a@example.org,b@example.org",
        "slack://T1/A2/B3C4",
    )
    settings = load_settings({"BRIDGE_ALERT_QUEUE_AGE_SECONDS": "120", "BRIDGE_PUBLIC_URL": "https://b.example.com/"})
    assert (settings.alert_urls, settings.alert_queue_age_seconds, settings.public_url) == (
        (),
        120.0,
        "https://b.example.com",
    )
    with pytest.raises(ConfigError, match=r"^BRIDGE_PUBLIC_URL: "):
        load_settings({"BRIDGE_PUBLIC_URL": "bridge.example.com"})


def test_a_bad_alert_url_stops_the_cli_with_one_line(sqlite_url, tmp_path) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    env = bridge_env(sqlite_url, "http://127.0.0.1:9", sources, BRIDGE_ALERT_URLS="nosuchscheme://u:topsecret-123@x")
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "bridge", "alert-test"],
        env={"PATH": str(BIN), **NO_DOTENV, **env},
        capture_output=True,
        timeout=60,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "configuration error: BRIDGE_ALERT_URLS: entry 1 (nosuchscheme://…) is not a URL apprise can send to"
        " (unknown scheme or missing parts; see https://github.com/caronc/apprise/wiki)"
    ]
    assert "topsecret" not in result.stderr + result.stdout


def test_a_cancel_is_not_news_and_old_failures_are_left_to_the_admin_page(alerting, sandbox, receiver) -> None:
    """The operator's own cancel is not notified; a failure older than the look-back (a target
    down for a week) is not told any more, and its mark is forgotten."""
    app = alerting()
    runtime = get_runtime(app)
    alerts = runtime.alerts()
    sandbox.sandbox.script("429:3600")
    waiting = post(app, {**BODY, "message": "wait"})
    deliver_all(runtime)
    client = app.test_client()
    assert client.post(f"/api/events/{waiting}/cancel", headers=admin_headers()).status_code == 200
    [old, recent] = fail_events(app, sandbox, 2)
    now = datetime.now(UTC)
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == old).values(updated_at=now - timedelta(days=8)))
    alerts.run(now)
    [notice] = receiver.posts
    assert recent in notice["title"] and old not in notice["message"] and waiting not in notice["message"]
    with runtime.store.engine.begin() as conn:  # told a week ago: the mark goes at the next notification
        conn.execute(update(events).where(events.c.id == recent).values(updated_at=now - timedelta(days=8)))
        conn.execute(update(alerted_failures).values(failed_at=now - timedelta(days=8)))
    fail_events(app, sandbox, 1)
    alerts.run(now + LATER)
    with runtime.store.engine.connect() as conn:
        marked = set(conn.execute(select(alerted_failures.c.event_id)).scalars())
    assert recent not in marked and len(marked) == 1
