"""Alerts: notifications through apprise (``BRIDGE_ALERT_URLS``) when events fail, when delivery
falls behind, and while SPP refuses the API token (docs/operations.md, Alerts).

:class:`Alerts` is a chore: every process that delivers runs it every ``EVERY_SECONDS``, and the
store (``bridge/store/alerts.py``) lets one process of all send each notification. Each kind of
alert goes to each target at most once per window (15 minutes); what happens meanwhile is told
in the next notification (the failures with a count). A target that does not take a
notification (down, refusing) gets it again at the next turn: nothing is marked as told until
the target has taken it, so a notification may come late, never not at all.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from hashlib import sha256
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

from bridge.log import scrub
from bridge.metrics import ALERTS_SENT
from bridge.store.alerts import AlertStore, Failure
from config.settings import quiet_apprise

log = logging.getLogger("bridge.alerts")
quiet_apprise()

EVERY_SECONDS = 20.0  # a failure is told within a minute
WINDOW_SECONDS = 15 * 60.0
LEASE_SECONDS = 120.0  # a turn held longer than this by a process that died is taken over
TITLE = "spp-ticket-bridge"
REASON_CHARS = 300
# failures older than this that were never told (a target down for a week) are left to the admin
# page: each turn reads only this stretch of the failed events, however many there are in all
FAILED_LOOKBACK = timedelta(days=7)


class AlertKind(StrEnum):
    FAILED = "failed"  # events that became failed
    QUEUE_AGE = "queue_age"  # the oldest due event has waited longer than BRIDGE_ALERT_QUEUE_AGE_SECONDS
    TOKEN = "token"  # delivery paused: SPP refuses the API token


@dataclass(frozen=True)
class Target:
    """One notification URL: ``label`` names it without its secrets, ``key`` keeps its throttle."""

    url: str = field(repr=False)
    label: str
    key: str


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    notify_type: str = apprise.NotifyType.FAILURE
    failures: Sequence[Failure] = ()


def target(url: str) -> Target:
    """The target of an alert URL (one ``config.settings`` accepted)."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        raise ValueError("not an apprise URL")
    private = plugin.url(privacy=True)
    parts = urlsplit(private)
    label = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    return Target(url, label, sha256(private.encode()).hexdigest()[:32])


def secret_parts(url: str) -> list[str]:
    """What of an alert URL must never be written anywhere: the URL itself, its password, the
    parts apprise masks when it shows the URL (Slack and Discord tokens …) and its query values
    (API keys, extra headers)."""
    found = [url]
    plugin = apprise.Apprise.instantiate(url)
    split = urlsplit(url)
    if split.password:
        found.append(unquote(split.password))
    found += [value for _, value in parse_qsl(split.query) if len(value) >= 4]
    if plugin is not None:
        shown = set(_tokens(plugin.url(privacy=True)))
        found += [t for t in _tokens(plugin.url(privacy=False)) if t not in shown and len(t) >= 4]
    return found


def _tokens(url: str) -> list[str]:
    return [unquote(t) for t in re.split(r"[/?&=:@#,;+ ]+", url) if t]


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def send(target: Target, notice: Notice) -> bool:
    """Send ``notice`` to ``target``; whether it took it (apprise logs nothing of ours)."""
    notifier = apprise.Apprise()
    notifier.add(target.url)
    try:
        return bool(notifier.notify(body=notice.body, title=notice.title, notify_type=notice.notify_type))
    except Exception:  # a plugin that raises is a target that did not take it
        return False


class Alerts:
    """The alerts chore: ``run(now)`` tells each target what there is to tell, if it is its turn."""

    def __init__(
        self,
        store: AlertStore,
        targets: Iterable[Target],
        *,
        queue_age_seconds: float,
        public_url: str | None,
        secrets: Iterable[str] = (),
        window_seconds: float = WINDOW_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.targets = list(targets)
        self.queue_age_seconds = queue_age_seconds
        self.public_url = public_url
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.window_seconds = window_seconds
        self.lease_seconds = lease_seconds
        self.owner = process_name()

    def run(self, now: datetime) -> None:
        started = time.monotonic()
        for kind in AlertKind:
            for each in self.targets:
                # the clock moves on while slow targets take their notifications: a turn is
                # taken (and held) from the time it is taken
                self._turn(kind, each, now + timedelta(seconds=time.monotonic() - started))

    def send_test(self) -> list[tuple[Target, bool]]:
        """One test notification to every target, whatever the throttle; (target, taken) each."""
        where = f" at {self.public_url}" if self.public_url else ""
        notice = Notice(
            f"{TITLE}: test notification",
            f"A test from spp-ticket-bridge{where}. Failed events, delivery falling behind and a"
            " refused SPP token are notified here.",
            apprise.NotifyType.INFO,
        )
        results = []
        for each in self.targets:
            taken = send(each, self._clean(notice))
            ALERTS_SENT.labels("test", "ok" if taken else "failed").inc()
            results.append((each, taken))
        return results

    def _turn(self, kind: AlertKind, to: Target, now: datetime) -> None:
        if self.store.throttled(kind, to.key, now) or self.compose(kind, to, now) is None:
            return
        if not self.store.take_turn(kind, to.key, self.owner, now, self.lease_seconds):
            return
        try:
            notice = self.compose(kind, to, now)  # afresh: what the last holder of the turn told is marked
            taken = notice is not None and send(to, self._clean(notice))
        except BaseException:
            self.store.not_sent(kind, to.key, self.owner)
            raise
        if notice is None:
            self.store.not_sent(kind, to.key, self.owner)
            return
        ALERTS_SENT.labels(kind, "ok" if taken else "failed").inc()
        if taken:
            forget = now - FAILED_LOOKBACK
            self.store.sent(kind, to.key, self.owner, now, self.window_seconds, notice.failures, forget)
            log.info("alert %s sent to %s", kind, to.label)
        else:
            self.store.not_sent(kind, to.key, self.owner)
            log.warning("alert %s: %s did not take the notification; it is sent again at the next turn", kind, to.label)

    def compose(self, kind: AlertKind, to: Target, now: datetime) -> Notice | None:
        """What ``to`` is to be told of ``kind`` now, or None when nothing."""
        if kind is AlertKind.FAILED:
            return self._failed(self.store.failures(to.key, now - FAILED_LOOKBACK))
        if kind is AlertKind.QUEUE_AGE:
            return self._queue_age(now)
        return self._token(now)

    def _failed(self, failures: Sequence[Failure]) -> Notice | None:
        if not failures:
            return None
        latest = failures[-1]
        reason = _shorten(latest.reason)
        link = self._link("/admin/events?status=failed")
        if len(failures) == 1:
            title = f"{TITLE}: event {latest.event_id} failed"
            body = f"Event {latest.event_id} from source {latest.source!r} failed: {reason}\nSee {link}."
        else:
            sources = ", ".join(sorted({f.source for f in failures}))
            title = f"{TITLE}: {len(failures)} events failed"
            body = (
                f"{len(failures)} events failed (sources: {sources}).\n"
                f"Latest: event {latest.event_id} from source {latest.source!r}: {reason}\nSee {link}."
            )
        return Notice(title, body, failures=failures)

    def _queue_age(self, now: datetime) -> Notice | None:
        backlog = self.store.backlog(now)
        if backlog.oldest_due_at is None or self.store.pause() is not None:
            return None  # while paused the token alert says why the queue waits
        waited = (now - backlog.oldest_due_at).total_seconds()
        if waited <= self.queue_age_seconds:
            return None
        return Notice(
            f"{TITLE}: delivery is behind",
            f"{backlog.due} event(s) are due for delivery to SPP; the oldest has been waiting for"
            f" {_duration(waited)} (BRIDGE_ALERT_QUEUE_AGE_SECONDS: {self.queue_age_seconds:g} s)."
            f"\nSee {self._link('/admin/events')}.",
            apprise.NotifyType.WARNING,
        )

    def _token(self, now: datetime) -> Notice | None:
        pause = self.store.pause()
        if pause is None:
            return None
        answer = f" (HTTP {pause.http_status})" if pause.http_status else ""
        waiting = self.store.backlog(now).due
        return Notice(
            f"{TITLE}: SPP refuses the API token",
            f"Delivery to SPP is paused since {pause.since:%Y-%m-%d %H:%M} UTC{answer}: SPP refuses"
            f" SPP_API_TOKEN. {waiting} event(s) are waiting; nothing is lost. Delivery resumes by"
            " itself once SPP accepts the token (set a valid SPP_API_TOKEN and restart)."
            f"\nSee {self._link('/admin')}.",
        )

    def _link(self, path: str) -> str:
        return f"{self.public_url}{path}" if self.public_url else "the admin page (/admin)"

    def _clean(self, notice: Notice) -> Notice:
        """No configured secret in what leaves the bridge (an event's reason may quote anything)."""
        return Notice(
            scrub(notice.title, self.secrets), scrub(notice.body, self.secrets), notice.notify_type, notice.failures
        )


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
