"""Replay: map a stored event again with the current configuration and queue it."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.errors import BridgeError, MappingFailed, Unmappable
from bridge.message import InboundMessage
from bridge.runtime import Runtime
from bridge.status import REPLAYABLE, Status
from bridge.tickets import build_ticket_request


class UnknownEvent(BridgeError):
    status = 404
    code = "unknown_event"


class ReplayConflict(BridgeError):
    status = 409
    code = "not_replayable"


def plausible_event_id(event_id: str) -> bool:
    """Could this be an event id? (The column holds 40 characters; PostgreSQL text holds no NUL.)"""
    return 0 < len(event_id) <= 40 and event_id.isprintable()


def replay_event(runtime: Runtime, event_id: str, force: bool = False) -> Status:
    """Re-queue a failed or discarded event (``force``: a delivered one too); returns the new status."""
    found = runtime.store.events.message_of(event_id) if plausible_event_id(event_id) else None
    if found is None:
        raise UnknownEvent(f"no event {event_id!r}")
    source_name, message, received_at = found
    allowed = (*REPLAYABLE, Status.DELIVERED) if force else REPLAYABLE
    source = runtime.sources.sources.get(source_name)
    now = datetime.now(UTC)
    try:
        if source is None:
            raise MappingFailed("unknown_source", f"source {source_name!r} is no longer in the sources file")
        request = build_ticket_request(_mappable(message), source, runtime.sources, received_at, event_id)
    except MappingFailed as exc:
        raise _mapping_failed(runtime, event_id, exc, force, now) from None
    if not runtime.store.events.requeue(event_id, allowed, request, now):
        raise _conflict(runtime, event_id, force)
    runtime.wake.set()
    return Status.QUEUED


def _mappable(message: InboundMessage | None) -> InboundMessage:
    if message is None:
        raise MappingFailed("no_message", "the event holds no normalized message to map")
    return message


def _mapping_failed(
    runtime: Runtime, event_id: str, exc: MappingFailed, force: bool, now: datetime
) -> Unmappable | ReplayConflict:
    """A failed or discarded event becomes failed with the new reason; a delivered one keeps its state."""
    if runtime.store.events.mark_failed(event_id, REPLAYABLE, str(exc), now):
        return Unmappable(exc, "still cannot map the event")
    event = runtime.store.queries.get_event(event_id)
    if force and event is not None and event["status"] == Status.DELIVERED:
        return Unmappable(exc, "still cannot map the event")
    return _conflict(runtime, event_id, force)


def _conflict(runtime: Runtime, event_id: str, force: bool) -> ReplayConflict:
    event = runtime.store.queries.get_event(event_id)
    status = event["status"] if event else "unknown"
    hint = "" if force or status != Status.DELIVERED else " (use force=true to deliver it again)"
    return ReplayConflict(f"event {event_id} is {status}; only failed or discarded events are replayed{hint}")
