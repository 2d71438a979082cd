"""Replay: map a stored event again with the current configuration and queue it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bridge.errors import BridgeError, MappingFailed, UnknownEvent, Unmappable
from bridge.intake import plan_event
from bridge.message import InboundMessage
from bridge.runtime import Runtime
from bridge.status import REPLAYABLE, Status


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
    source = runtime.sources.sources.get(source_name)
    now = datetime.now(UTC)
    try:
        if source is None:
            raise MappingFailed("unknown_source", f"source {source_name!r} is no longer in the sources file")
        message = _with_files(runtime, event_id, _mappable(message))
        delivery = plan_event(runtime, message, source, received_at, event_id)
    except MappingFailed as exc:
        raise _mapping_failed(runtime, event_id, exc, force, now) from None
    requeue = functools.partial(
        runtime.store.events.requeue,
        event_id,
        ticket_request=delivery.ticket_request,
        now=now,
        plan=delivery.plan,
        client=(delivery.client_id, delivery.client_how),
    )
    if not requeue(REPLAYABLE) and not (force and requeue([Status.DELIVERED], restart=True)):
        raise _conflict(runtime, event_id, force)
    runtime.wake.set()
    return Status.QUEUED


def _with_files(runtime: Runtime, event_id: str, message: InboundMessage) -> InboundMessage:
    """The message with the bytes of its stored files, which the stored message does not hold."""
    stored = runtime.store.events.files_of(event_id)
    if not stored:
        return message
    files = [replace(a, content=stored[n]) if n in stored else a for n, a in enumerate(message.attachments)]
    return replace(message, attachments=files)


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
    if force and event is not None and event["status"] == Status.DELIVERED and event["purged_at"] is None:
        return Unmappable(exc, "still cannot map the event")
    return _conflict(runtime, event_id, force)


def _conflict(runtime: Runtime, event_id: str, force: bool) -> ReplayConflict:
    event = runtime.store.queries.get_event(event_id)
    if event is not None and event["purged_at"] is not None:
        return ReplayConflict(
            f"event {event_id} cannot be replayed: its request and message were deleted on"
            f" {event['purged_at']:%Y-%m-%d %H:%M} UTC (retention)"
        )
    status = event["status"] if event else "unknown"
    hint = "" if force or status != Status.DELIVERED else " (use force=true to deliver it again)"
    return ReplayConflict(f"event {event_id} is {status}; only failed or discarded events are replayed{hint}")


@dataclass(frozen=True)
class BulkReplay:
    """What a replay of many failed events did: those queued, and those left failed (they still
    cannot be mapped, or left the failed state meanwhile)."""

    replayed: int
    not_replayed: int


# told of each event as it is done: (its place, how many in all, its id, why it was not replayed or None)
Progress = Callable[[int, int, str, BridgeError | None], None]


def failed_ids(
    runtime: Runtime, source: str | None = None, since: datetime | None = None, search: str | None = None
) -> list[str]:
    """The failed events a bulk replay takes, oldest first: of ``source``, received at or after
    ``since`` (a naive time is UTC), whose sender or subject contains ``search``."""
    return runtime.store.queries.event_ids(Status.FAILED, source, _utc(since), search)


def count_failed(
    runtime: Runtime, source: str | None = None, since: datetime | None = None, search: str | None = None
) -> int:
    """How many events :func:`failed_ids` lists."""
    return runtime.store.queries.count_events(Status.FAILED, source, _utc(since), search)


def replay_failed(
    runtime: Runtime,
    source: str | None = None,
    since: datetime | None = None,
    search: str | None = None,
    progress: Progress | None = None,
) -> BulkReplay:
    """Replay every failed event :func:`failed_ids` lists, one at a time: one short read of the
    ids, then each event its own replay (no transaction spans them). The admin API, the admin
    page and ``bridge replay --failed`` all replay through this."""
    ids = failed_ids(runtime, source, since, search)
    replayed = 0
    for n, event_id in enumerate(ids, 1):
        refused: BridgeError | None = None
        try:
            replay_event(runtime, event_id)
            replayed += 1
        except (UnknownEvent, ReplayConflict, Unmappable) as exc:
            refused = exc
        if progress is not None:
            progress(n, len(ids), event_id, refused)
    return BulkReplay(replayed, len(ids) - replayed)


def _utc(since: datetime | None) -> datetime | None:
    return since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
