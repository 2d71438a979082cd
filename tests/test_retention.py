"""Retention (docs/behaviour.md, Retention): the request, message and files of finished events
are deleted after BRIDGE_RETENTION_DAYS (failed ones after 90 days at least) by the worker's
chore and by ``bridge purge``; the row, its ids and attempts stay. On SQLite and PostgreSQL,
with events delivered to the sandbox on a real port.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text, update

from bridge.db import attachments, attempts, clients, events
from bridge.message import InboundMessage
from bridge.retention import parse_age
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import SandboxServer
from bridge.status import Status
from bridge.store import NewEvent
from config.settings import ConfigError, load_settings
from tests.conftest import AppFactory, admin_headers, deliver_all
from tests.http.test_admin_page import page, signed_in, text_of
from tests.test_conversation_email import TOKEN, detail, mail, post

SOURCES = f"""
defaults: {{user_id: 1}}
clients:
  alice@example.com: 12
client_lookup: false
sources:
  mail: {{kind: email, secret: {TOKEN}}}
"""
MONTH = timedelta(days=30)
# what a purge leaves as it was (attempt_rows: the event's rows in attempts)
KEPT = [
    "id",
    "source",
    "dedupe_key",
    "status",
    "request_id",
    "attempts",
    "ticket_id",
    "spp_request_id",
    "last_error",
    "received_at",
    "updated_at",
    "delivered_at",
    "client_id",
    "client_how",
    "spp_message_id",
    "thread_of",
    "email_message_id",
    "attempt_rows",
]
NOW = datetime.now  # the real clock: events are stored with it


def row(runtime: Runtime, event_id: str) -> dict[str, Any]:
    with runtime.store.engine.connect() as conn:
        found = conn.execute(select(events).where(events.c.id == event_id)).mappings().one()
        files = conn.execute(select(func.count()).where(attachments.c.event_id == event_id)).scalar_one()
        tries = conn.execute(select(func.count()).where(attempts.c.event_id == event_id)).scalar_one()
    return {**found, "files": files, "attempt_rows": tries, "raw_body": bytes(found["raw_body"])}


def finished_ago(runtime: Runtime, age: timedelta, *event_ids: str) -> None:
    """Move the time these events reached their status back by ``age``."""
    with runtime.store.engine.begin() as conn:
        for event_id in event_ids:
            conn.execute(update(events).where(events.c.id == event_id).values(updated_at=NOW(UTC) - age))


def discarded(runtime: Runtime, n: int, body: bytes = b"x" * 1000) -> list[str]:
    """``n`` discarded events stored straight through the event store, as intake stores them."""
    ids = []
    for i in range(n):
        event_id = f"evt_{i:012x}{os.urandom(8).hex()}"
        message = InboundMessage(dedupe_key=f"k{i}-{event_id}", email="x@example.com", subject=f"s{i}", body="b")
        new = NewEvent(event_id, "mail", Status.DISCARDED, message, None, "auto-reply", NOW(UTC), raw_body=body)
        runtime.store.events.add(new)
        ids.append(event_id)
    return ids


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    return get_runtime(app)


# --- what goes and what stays -------------------------------------------------------------


def test_purge_deletes_body_message_and_files_and_keeps_the_row(
    app: Flask, runtime: Runtime, sandbox: SandboxServer
) -> None:
    delivered = post(app, mail("<d1@alice.example>", files=[("a.bin", "application/octet-stream", b"A" * 5000)]))
    deliver_all(runtime)
    auto = post(app, mail("<d2@alice.example>", subject="Out of office", Auto_Submitted="auto-replied"))
    sandbox.sandbox.script(422)
    failed = post(app, mail("<d3@alice.example>", subject="Refused"))
    deliver_all(runtime)
    recent = post(app, mail("<d4@alice.example>", subject="Recent"))
    deliver_all(runtime)
    finished_ago(runtime, MONTH + timedelta(hours=1), delivered, auto, failed)
    finished_ago(runtime, MONTH - timedelta(hours=1), recent)
    before = {event_id: row(runtime, event_id) for event_id in (delivered, auto, failed, recent)}
    assert [before[e]["status"] for e in (delivered, auto, failed, recent)] == [
        "delivered",
        "discarded",
        "failed",
        "delivered",
    ]
    assert before[delivered]["files"] == 1 and before[delivered]["raw_body"]

    purged = runtime.store.retention.purge(NOW(UTC), MONTH)

    assert (purged.finished.events, purged.failed.events) == (2, 0)
    assert purged.finished.attachments == 1 and purged.finished.attachment_bytes == 5000
    assert purged.finished.body_bytes == len(before[delivered]["raw_body"]) + len(before[auto]["raw_body"])
    assert purged.finished.message_bytes > 0
    for event_id in (delivered, auto):
        after, earlier = row(runtime, event_id), before[event_id]
        assert after["raw_body"] == b"" and after["files"] == 0
        assert (after["ticket_request"], after["plan"], after["search_text"]) == (None, None, None)
        assert after["raw_request"] == {
            "method": "POST",
            "path": "/hooks/mail",
            "body_bytes": earlier["raw_request"]["body_bytes"],
            "body_stored": False,
        }
        assert after["purged_at"] is not None
        assert {k: after[k] for k in KEPT} == {k: earlier[k] for k in KEPT}
    # a delivered mail keeps its sender's address, for the replies that may join its ticket
    assert row(runtime, delivered)["message"] == {"email": "alice@example.com"}
    assert row(runtime, auto)["message"] is None
    # a failed event keeps everything for 90 days; one finished 29 days ago is not due yet
    for event_id in (failed, recent):
        assert row(runtime, event_id) == before[event_id]

    finished_ago(runtime, timedelta(days=90, hours=1), failed)
    purged = runtime.store.retention.purge(NOW(UTC), MONTH)
    assert (purged.finished.events, purged.failed.events) == (0, 1)
    after = row(runtime, failed)
    assert after["raw_body"] == b"" and after["last_error"] == before[failed]["last_error"]
    assert row(runtime, recent)["purged_at"] is None


def test_a_longer_retention_keeps_failed_events_longer_too(runtime: Runtime) -> None:
    [event_id] = discarded(runtime, 1)
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == event_id).values(status=Status.FAILED))
    finished_ago(runtime, timedelta(days=100), event_id)
    assert runtime.store.retention.purge(NOW(UTC), timedelta(days=120)).events == 0
    assert runtime.store.retention.purge(NOW(UTC), timedelta(days=99)).failed.events == 1


def test_events_not_finished_are_never_purged(runtime: Runtime) -> None:
    ids = discarded(runtime, 3)
    for event_id, status in zip(ids, (Status.QUEUED, Status.RETRYING, Status.DELIVERING), strict=True):
        with runtime.store.engine.begin() as conn:
            conn.execute(update(events).where(events.c.id == event_id).values(status=status))
    finished_ago(runtime, timedelta(days=400), *ids)
    assert runtime.store.retention.purge(NOW(UTC), MONTH).events == 0


def test_a_failed_event_replayed_late_keeps_its_data_after_its_delivery(
    app: Flask, runtime: Runtime, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.script(422)
    event_id = post(app, mail("<late@alice.example>"))
    deliver_all(runtime)
    finished_ago(runtime, timedelta(days=89), event_id)
    response = app.test_client().post(f"/api/events/{event_id}/replay", headers=admin_headers())
    assert response.status_code == 200
    deliver_all(runtime)
    assert detail(app, event_id)["status"] == "delivered"
    assert runtime.store.retention.purge(NOW(UTC), MONTH).events == 0
    assert row(runtime, event_id)["raw_body"]


def test_purge_goes_in_batches_until_none_is_left(runtime: Runtime) -> None:
    ids = discarded(runtime, 25)
    finished_ago(runtime, MONTH + timedelta(days=1), *ids)
    purged = runtime.store.retention.purge(NOW(UTC), MONTH, batch=10)
    assert (purged.batches, purged.events, purged.finished.body_bytes) == (3, 25, 25 * 1000)
    assert runtime.store.retention.purge(NOW(UTC), MONTH, batch=10).batches == 0


def test_a_batch_holds_no_more_bytes_than_its_limit_but_one_event_at_least(runtime: Runtime) -> None:
    ids = discarded(runtime, 5, body=b"z" * 10_000)  # and a message of a few hundred bytes
    finished_ago(runtime, MONTH + timedelta(days=1), *ids)
    purged = runtime.store.retention.purge(NOW(UTC), MONTH, max_batch_bytes=25_000)
    assert (purged.batches, purged.events) == (3, 5)
    ids = discarded(runtime, 2, body=b"z" * 5000)
    finished_ago(runtime, MONTH + timedelta(days=1), *ids)
    assert runtime.store.retention.purge(NOW(UTC), MONTH, max_batch_bytes=10).batches == 2


def test_the_purge_query_reads_the_partial_index(runtime: Runtime) -> None:
    """What is left to purge is found through ix_events_purgeable, not by reading every event."""
    store = runtime.store
    query = (
        "SELECT id FROM events WHERE purged_at IS NULL AND status IN ('delivered', 'discarded', 'failed')"
        " AND updated_at < :cutoff ORDER BY updated_at LIMIT 200"
    )
    with store.engine.connect() as conn:
        if store.is_postgres:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(conn.execute(text("EXPLAIN " + query), {"cutoff": NOW(UTC)}).scalars())
        else:
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + query), {"cutoff": NOW(UTC)}).all()
            plan = " ".join(str(r[-1]) for r in rows)
    assert "ix_events_purgeable" in plan, plan


def test_stale_client_lookups_are_forgotten_and_known_clients_stay(runtime: Runtime) -> None:
    old = NOW(UTC) - timedelta(days=2)
    with runtime.store.engine.begin() as conn:
        conn.execute(
            clients.insert(),
            [
                {"email": "gone@example.com", "client_id": None, "how": "not_found", "checked_at": old},
                {"email": "fresh@example.com", "client_id": None, "how": "not_found", "checked_at": NOW(UTC)},
                {"email": "known@example.com", "client_id": 7, "how": "found", "checked_at": old},
            ],
        )
    assert runtime.store.retention.purge(NOW(UTC), MONTH).stale_clients == 1
    with runtime.store.engine.connect() as conn:
        left = set(conn.execute(select(clients.c.email)).scalars())
    assert left == {"fresh@example.com", "known@example.com"}


# --- a purged event elsewhere ---------------------------------------------------------------


def test_a_purged_event_is_not_replayed(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    sandbox.sandbox.script(422)
    failed = post(app, mail("<r1@alice.example>"))
    deliver_all(runtime)
    delivered = post(app, mail("<r2@alice.example>", subject="Fine"))
    deliver_all(runtime)
    assert detail(app, delivered)["status"] == "delivered"
    finished_ago(runtime, timedelta(days=91), failed, delivered)
    runtime.store.retention.purge(NOW(UTC), MONTH)
    client = app.test_client()
    for event_id, query in ((failed, ""), (delivered, "?force=true"), (delivered, "")):
        before = row(runtime, event_id)
        response = client.post(f"/api/events/{event_id}/replay{query}", headers=admin_headers())
        assert response.status_code == 409, response.get_data(as_text=True)
        body = response.get_json()
        assert body["error"] == "not_replayable"
        assert "its request and message were deleted on" in body["message"] and "(retention)" in body["message"]
        assert row(runtime, event_id) == before
    assert detail(app, failed)["purged_at"] is not None
    assert detail(app, post(app, mail("<r3@alice.example>")))["purged_at"] is None
    # nor counted or taken by a bulk replay: it stays failed for good
    bulk = client.post("/api/events/replay?status=failed", headers=admin_headers())
    assert bulk.get_json() == {"replayed": 0, "not_replayed": 0}
    assert "Replay the" not in page(signed_in(app), "/admin/events?status=failed")


def test_the_admin_page_says_what_was_deleted(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    event_id = post(app, mail("<p1@alice.example>", body="Secret words", subject="Private matter"))
    deliver_all(runtime)
    finished_ago(runtime, timedelta(days=31), event_id)
    runtime.store.retention.purge(NOW(UTC), MONTH)
    html = page(signed_in(app), f"/admin/events/{event_id}")
    notice = text_of(html, "purged")
    assert re.fullmatch(r"Its request and message were deleted on .+ \(retention\)\.", notice), notice
    for gone in ("Inbound message", "First message", "StoreTicketRequest sent to SPP", "(empty)"):
        assert gone not in html
    assert text_of(html, "step-ticket").startswith("ticket done ticket ")
    assert text_of(html, "client-id") == "12"


def test_a_reply_to_a_purged_mail_joins_its_ticket(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    """Threading needs the earlier row's Message-ID, ticket and client, and for the default user
    the sender's address: all kept."""
    first = post(app, mail("<t1@carol.example>", sender="carol@example.org"))
    deliver_all(runtime)
    ticket_id = detail(app, first)["ticket_id"]
    assert detail(app, first)["client_how"] == "default"
    finished_ago(runtime, timedelta(days=31), first)
    assert runtime.store.retention.purge(NOW(UTC), MONTH).events == 1

    reply = post(app, mail("<t2@carol.example>", sender="carol@example.org", In_Reply_To="<t1@carol.example>"))
    stranger = post(app, mail("<t3@mallory.example>", sender="mallory@example.org", In_Reply_To="<t1@carol.example>"))
    deliver_all(runtime)
    assert (detail(app, reply)["ticket_id"], detail(app, reply)["thread_of"]) == (ticket_id, first)
    assert detail(app, stranger)["ticket_id"] not in (None, ticket_id)


# --- the chore, the command, the setting ----------------------------------------------------


def test_the_worker_chore_purges_and_logs_one_line(
    make_app: AppFactory, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = get_runtime(make_app(SOURCES, BRIDGE_RETENTION_DAYS="7"))
    [chore] = [c for c in runtime.chores() if c.name == "retention"]
    assert chore.every_seconds == 4 * 3600
    ids = discarded(runtime, 3)
    finished_ago(runtime, timedelta(days=8), *ids[:2])
    stopped = threading.Event()
    stopped.set()
    chore.run(NOW(UTC), stopped)  # the worker is stopping: not one batch
    assert [row(runtime, e)["purged_at"] for e in ids] == [None, None, None]
    with caplog.at_level(logging.INFO, logger="bridge.retention"):
        chore.run(NOW(UTC), threading.Event())
        chore.run(NOW(UTC), threading.Event())  # nothing left: no line
    [line] = [r.getMessage() for r in caplog.records if r.name == "bridge.retention"]
    assert line.startswith("retention (7 days): purged 2 events in 1 batches; delivered or discarded: 2 events,")
    assert [row(runtime, e)["purged_at"] is not None for e in ids] == [True, True, False]


def test_bridge_purge_prints_what_it_removed(app: Flask, runtime: Runtime) -> None:
    ids = discarded(runtime, 3, body=b"y" * 700)
    finished_ago(runtime, timedelta(hours=13), *ids[:2])
    runner = app.test_cli_runner()
    assert "purged 0 events" in runner.invoke(args=["bridge", "purge"]).output
    result = runner.invoke(args=["bridge", "purge", "--older-than", "12h"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "purged 2 events (finished over 12 hours ago; failed: over 90 days ago)"
    assert re.fullmatch(
        r"  delivered or discarded: 2 events, 1400 bytes of raw bodies, \d+ bytes of messages and ticket requests,"
        r" 0 attachments \(0 bytes\)",
        lines[1],
    ), lines[1]
    assert lines[2].startswith("  failed: 0 events, 0 bytes of raw bodies")


@pytest.mark.parametrize("value", ["12x", "-3d", "", "d", "1.5d", "99999d", "999999999h", "1\u0663d", "0", "0s"])
def test_bridge_purge_refuses_a_bad_age(app: Flask, value: str) -> None:
    result = app.test_cli_runner().invoke(args=["bridge", "purge", "--older-than", value])
    assert result.exit_code == 2
    assert "Invalid value for '--older-than'" in result.output and "Traceback" not in result.output


def test_ages() -> None:
    assert [parse_age(v) for v in ("30d", "12h", "90m", "45s", "7", " 2D ")] == [
        timedelta(days=30),
        timedelta(hours=12),
        timedelta(minutes=90),
        timedelta(seconds=45),
        timedelta(days=7),
        timedelta(days=2),
    ]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("0", "BRIDGE_RETENTION_DAYS: must be at least 1, got 0"),
        ("thirty", "BRIDGE_RETENTION_DAYS: 'thirty' is not a whole number"),
        ("36501", "BRIDGE_RETENTION_DAYS: must be at most 36500, got 36501"),
    ],
)
def test_a_bad_retention_stops_start_up(value: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"BRIDGE_RETENTION_DAYS": value})
    assert str(raised.value) == error
    assert load_settings({}).retention_days == 30
    assert load_settings({"BRIDGE_RETENTION_DAYS": "90"}).retention_days == 90


# --- the database stops growing ---------------------------------------------------------------

ROUNDS, PER_ROUND = 30, 20


def database_bytes(runtime: Runtime) -> int:
    """What the database takes on disk for events: SQLite's pages (free ones too, which new rows
    reuse); PostgreSQL's events and attachments with their TOAST and indexes, after a VACUUM makes
    the space of deleted values reusable."""
    engine = runtime.store.engine
    if not runtime.store.is_postgres:
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            return int(pages) * int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM events, attachments"))
        size = "pg_total_relation_size('events') + pg_total_relation_size('attachments')"
        return int(conn.execute(text(f"SELECT {size}")).scalar_one())


def test_a_steady_stream_with_a_short_retention_stops_growing(app: Flask, runtime: Runtime) -> None:
    """30 rounds of 20 mails (10 kB of text and a 10 kB file each) delivered to the sandbox, with
    everything finished purged after each round (a retention of no time at all): the bodies held
    stay at one round's worth, and once the space of a round's bodies is there to be reused the
    database grows only by the rows that stay (about 3 kB an event with its attempts, a tenth of
    what it posts). Without the purge both grow with every round by more than was posted."""
    held, sizes, posted = [], [], []
    for n in range(ROUNDS):
        round_bytes = 0
        for i in range(PER_ROUND):
            raw = mail(
                f"<s{n}-{i}@alice.example>",
                body=os.urandom(7500).hex()[:10_000],
                subject=f"Round {n} mail {i}",
                files=[("f.bin", "application/octet-stream", os.urandom(10_000))],
            )
            post(app, raw)
            round_bytes += len(raw)
        deliver_all(runtime)
        held.append(runtime.store.retention.stored_bytes())
        purged = runtime.store.retention.purge(NOW(UTC), timedelta(0))
        assert purged.finished.events == PER_ROUND
        sizes.append(database_bytes(runtime))
        posted.append(round_bytes)
    assert max(held) < 2 * min(held), held
    growth, later = sizes[-1] - sizes[9], sum(posted[10:])
    assert growth < 0.25 * later, (sizes, later)
