"""Retention as the operator meets it: the worker's purge chore, the ages ``bridge purge`` takes,
and the one summary both print. What a purge deletes is in ``bridge/store/retention.py``."""

from __future__ import annotations

import logging
import re
import threading
from datetime import datetime, timedelta

from bridge.chores import Chore
from bridge.store import Purged, Removed, Store

log = logging.getLogger("bridge.retention")

# the chore runs a few times a day in each worker (a first time at its first tick)
PURGE_EVERY_SECONDS = 4 * 3600.0
# between two batches, so that intake and delivery get the database in between
PAUSE_SECONDS = 0.5

_AGE = re.compile(r"([0-9]{1,9})\s*([dhms]?)")
MAX_AGE_DAYS = 36500  # as BRIDGE_RETENTION_DAYS: a hundred years is "keep everything"
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 86400}


class BadAge(ValueError):
    """Not an age ``bridge purge --older-than`` takes."""


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, or a whole number of days; more than 0."""
    found = _AGE.fullmatch(text.strip().lower())
    if found is None:
        raise BadAge(f"{text!r} is not an age like 30d, 12h, 90m, 45s or a number of days")
    number, unit = int(found.group(1)), found.group(2)
    if number == 0:
        raise BadAge(f"{text!r} is no age: give more than 0")
    seconds = number * _UNIT_SECONDS[unit]
    if seconds > MAX_AGE_DAYS * 86400:
        raise BadAge(f"{text!r} is more than {MAX_AGE_DAYS} days")
    return timedelta(seconds=seconds)


def describe_age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def summary(purged: Purged) -> list[str]:
    """What a purge removed, one line per kind of event: delivered and discarded, failed."""
    return [
        f"delivered or discarded: {_removed(purged.finished)}",
        f"failed: {_removed(purged.failed)}",
    ]


def _removed(removed: Removed) -> str:
    return (
        f"{removed.events} events, {removed.body_bytes} bytes of raw bodies,"
        f" {removed.message_bytes} bytes of messages and ticket requests,"
        f" {removed.attachments} attachments ({removed.attachment_bytes} bytes)"
    )


def purge_chore(
    store: Store,
    days: int,
    every_seconds: float = PURGE_EVERY_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
) -> Chore:
    """The worker's purge: every ``every_seconds``, batch after batch until none is left."""
    older_than = timedelta(days=days)

    def run(now: datetime, stopping: threading.Event) -> Purged:
        purged = store.retention.purge(now, older_than, pause_seconds=pause_seconds, stopping=stopping.is_set)
        if purged.events or purged.stale_clients:
            log.info(
                "retention (%d days): purged %d events in %d batches; %s; %s; %d stale client look-ups forgotten",
                days,
                purged.events,
                purged.batches,
                *summary(purged),
                purged.stale_clients,
            )
        return purged

    return Chore("retention", every_seconds, run)
