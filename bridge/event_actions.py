"""The operator's actions on one waiting event: "retry now" and "cancel" (the admin API, page and CLI).

Both work on an event that is ``queued`` or ``retrying``; one a worker holds (``delivering``) or
that has finished is refused with :class:`NotWaiting` (409). The store makes each one
conditional update that a worker's claim excludes (``bridge/store/actions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.errors import NotWaiting, UnknownEvent
from bridge.replay import plausible_event_id
from bridge.runtime import Runtime
from bridge.status import Status

CANCEL_REASON = "cancelled by the operator"


@dataclass(frozen=True)
class Retried:
    """An event made due: its status (unchanged), and whether delivery is paused (SPP refuses the
    token), in which case it waits for the pause to end like every other event."""

    status: Status
    delivery_paused: bool


def retry_now(runtime: Runtime, event_id: str) -> Retried:
    """Make a ``queued`` or ``retrying`` event due now and wake the worker.

    The attempt it leads to comes out of the event's retry budget like any other: the count
    towards ``BRIDGE_MAX_ATTEMPTS`` and the 72 h window go on from receipt or the last replay
    (a replay of a failed event starts them again). An event already due keeps its place.
    """
    status = runtime.store.actions.retry_now(_known(event_id), datetime.now(UTC))
    if status is None:
        raise _not_waiting(runtime, event_id, "retried now")
    runtime.wake.set()
    return Retried(status, runtime.store.queries.delivery_pause() is not None)


def cancel(runtime: Runtime, event_id: str) -> Status:
    """Fail a ``queued`` or ``retrying`` event with ``last_error`` "cancelled by the operator";
    it can be replayed like any failed event."""
    if not runtime.store.actions.cancel(_known(event_id), datetime.now(UTC), CANCEL_REASON):
        raise _not_waiting(runtime, event_id, "cancelled")
    return Status.FAILED


def _known(event_id: str) -> str:
    if not plausible_event_id(event_id):
        raise UnknownEvent(f"no event {event_id!r}")
    return event_id


def _status(runtime: Runtime, event_id: str) -> Status:
    event = runtime.store.queries.get_event(event_id)
    if event is None:
        raise UnknownEvent(f"no event {event_id!r}")
    return Status(event["status"])


def _not_waiting(runtime: Runtime, event_id: str, what: str) -> NotWaiting:
    status = _status(runtime, event_id)  # UnknownEvent when there is no such event
    if status == Status.DELIVERING:
        why = "a worker is delivering it right now"
    elif status in (Status.QUEUED, Status.RETRYING):  # leased a moment ago, or given back meanwhile
        why = "a worker holds it"
    else:
        why = f"it is {status}"
    return NotWaiting(f"event {event_id} cannot be {what}: {why}; only queued or retrying events can")
