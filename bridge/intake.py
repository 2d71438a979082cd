"""Intake: what becomes of a parsed inbound message before the sender gets its answer.

The HTTP layer verifies and parses a request into an :class:`InboundMessage`; here the
message gets an event id, its first status (``queued`` with a ticket request, ``discarded``,
or ``failed`` when it cannot be mapped: stored all the same, so nothing is lost) and is
stored. The admin API and page preview the same mapping without storing or sending anything.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug import Request

from bridge.conversation import Delivery, delivery_calls, plan_delivery
from bridge.errors import MappingFailed, RateLimited, Unauthorized, UnknownSource, Unmappable
from bridge.message import InboundMessage
from bridge.metrics import ACCEPTED, DUPLICATES
from bridge.providers import PROVIDERS
from bridge.runtime import Runtime
from bridge.sources import Source
from bridge.status import Status
from bridge.store import Added, NewEvent, OneTimeToken, RateCheck, RateExceeded, ReplayedToken

RATE_KEY_LENGTH = 255  # rate_counters.key is varchar(255)


@dataclass(frozen=True)
class Received:
    """The request as it is kept beside its message, credentials already removed."""

    request_id: str | None
    raw_request: dict[str, Any]  # method, path, query, headers
    raw_body: bytes
    client_ip: str | None = None  # the sender's address (after the proxy's X-Forwarded-For)


@dataclass(frozen=True)
class Mapped:
    """A message's first status: queued with its delivery (ticket request and plan), or why it makes no ticket."""

    status: Status
    delivery: Delivery | None = None
    failure: MappingFailed | None = None


def new_event_id() -> str:
    """Time-ordered, so that ordering by id is ordering by arrival. The 64 random bits only keep
    ids of one millisecond apart (an id is no secret): ``random`` is seeded from the system in
    each process (again after a fork), and unlike ``secrets`` it does not let go of the GIL for
    a system call on every webhook, which under load costs a wait to take it back."""
    return f"evt_{time.time_ns() // 1_000_000:012x}{random.getrandbits(64):016x}"


def find_source(runtime: Runtime, source_name: str) -> Source:
    source = runtime.sources.sources.get(source_name)
    if source is None:
        raise UnknownSource(f"no source named {source_name!r} in the sources file")
    return source


def map_message(
    message: InboundMessage,
    source: Source,
    runtime: Runtime,
    received_at: datetime,
    event_id: str | None = None,
) -> Mapped:
    """Discarded when the provider said so (auto-reply, spam), else the source's mapping."""
    if message.discard_reason:
        return Mapped(Status.DISCARDED, failure=MappingFailed(Status.DISCARDED, message.discard_reason))
    try:
        return Mapped(Status.QUEUED, plan_event(runtime, message, source, received_at, event_id))
    except MappingFailed as exc:
        return Mapped(Status.FAILED, failure=exc)


def plan_event(
    runtime: Runtime, message: InboundMessage, source: Source, received_at: datetime, event_id: str | None
) -> Delivery:
    """The ticket request and conversation plan of ``message``; raises MappingFailed."""
    return plan_delivery(
        message,
        source,
        runtime.sources,
        received_at,
        event_id,
        max_attachment_bytes=runtime.settings.max_attachment_bytes,
        threads=PROVIDERS[source.kind].threads,
    )


def accept(runtime: Runtime, source: Source, message: InboundMessage, received: Received) -> Added:
    """Store ``message`` as a new event of ``source`` (or find the one it repeats); committed on return.

    Raises Unauthorized when the message reuses a one-time signature token of another message,
    RateLimited (nothing stored) when the sender is over the source's ``rate_limit``,
    StoreUnavailable when the database does not answer.
    """
    message = _scrubbed(message, source)
    event_id, received_at = new_event_id(), datetime.now(UTC)
    mapped = map_message(message, source, runtime, received_at, event_id)
    new = NewEvent(
        id=event_id,
        source=source.name,
        status=mapped.status,
        message=message,
        ticket_request=mapped.delivery.ticket_request if mapped.delivery else None,
        last_error=_last_error(mapped),
        received_at=received_at,
        request_id=received.request_id,
        **_kept_request(source, message, received),
        **_conversation(mapped.delivery),
        email_message_id=message.message_id if PROVIDERS[source.kind].threads else None,
    )
    try:
        added = runtime.store.events.add(new, _one_time_token(message, source), rate_check(source, message, received))
    except ReplayedToken as replayed:
        used_for = "at another source" if replayed.other_source else "for another message"
        raise Unauthorized(f"this signature was already used {used_for} (replayed request)") from None
    except RateExceeded as exc:
        assert source.rate_limit is not None
        raise RateLimited(
            f"more than {source.rate_limit.text} new events from this sender; nothing was stored,"
            f" retry in {exc.retry_after} s",
            retry_after=exc.retry_after,
        ) from None
    if added.created:
        ACCEPTED.labels(source.name, added.status).inc()
        if added.status == Status.QUEUED:
            runtime.wake.set()
    else:
        DUPLICATES.labels(source.name).inc()
    return added


def preview(runtime: Runtime, source: Source, request: Request) -> dict[str, Any]:
    """The StoreTicketRequest ``/hooks/<source>`` would send for ``request``; the sender's secret
    is not checked (the admin token authorized the call). Nothing is stored or sent.

    Raises the hook's own errors, or Unmappable when no ticket would be made.
    """
    mapped = _preview(runtime, source, request)
    assert mapped.delivery is not None
    return mapped.delivery.ticket_request


def preview_calls(runtime: Runtime, source: Source, request: Request) -> dict[str, Any]:
    """The requests delivery would make to SPP for ``request``, in order, none of them made:
    the client look-up (and creation), the ticket, the message with its files. A reply is shown
    as a new ticket: whether it joins an earlier one is known only at delivery."""
    mapped = _preview(runtime, source, request)
    assert mapped.delivery is not None
    return delivery_calls(mapped.delivery)


def _preview(runtime: Runtime, source: Source, request: Request) -> Mapped:
    message = _scrubbed(PROVIDERS[source.kind].read(request, source, verify=False), source)
    mapped = map_message(message, source, runtime, datetime.now(UTC))
    if mapped.failure is not None:
        raise Unmappable(mapped.failure, f"it would be stored as {mapped.status}")
    return mapped


def _scrubbed(message: InboundMessage, source: Source) -> InboundMessage:
    return message.scrubbed([source.secret]) if source.secret else message


def _last_error(mapped: Mapped) -> str | None:
    if mapped.failure is None:
        return None
    if mapped.status == Status.DISCARDED:
        return f"discarded: {mapped.failure.detail}"
    return str(mapped.failure)


def rate_check(source: Source, message: InboundMessage, received: Received) -> RateCheck | None:
    """What the source's ``rate_limit`` counts: the sender's address, else the client's IP address.

    The count is per source and window length, so a changed ``rate_limit`` starts afresh. A repeat
    of a stored event is not counted (see EventStore.add): a sender's retry gets its duplicate answer.
    """
    limit = source.rate_limit
    if limit is None:
        return None
    address = (message.email or "").strip().lower()
    sender = f"email:{address}" if address else f"ip:{received.client_ip or 'unknown'}"
    prefix = f"{source.name}/{limit.seconds}/"
    key = prefix + sender
    if len(key) > RATE_KEY_LENGTH or not key.isprintable():
        key = prefix + "sha256:" + hashlib.sha256(sender.encode("utf-8", "surrogatepass")).hexdigest()
    return RateCheck(key, limit.count, limit.seconds)


def _one_time_token(message: InboundMessage, source: Source) -> OneTimeToken | None:
    if not message.replay_token:
        return None
    return OneTimeToken(message.replay_token, PROVIDERS[source.kind].token_ttl_seconds)


def _conversation(delivery: Delivery | None) -> dict[str, Any]:
    if delivery is None:
        return {}
    return {
        "plan": delivery.plan,
        "client_id": delivery.client_id,
        "client_how": delivery.client_how,
        "files": delivery.files,
    }


def _kept_request(source: Source, message: InboundMessage, received: Received) -> dict[str, Any]:
    """The request as stored: its body only where the message's fields do not hold all of it
    already, so that a post is kept once, not twice (docs/limits.md)."""
    keep_body = not PROVIDERS[source.kind].body_in_message(message)
    return {
        "raw_request": {**received.raw_request, "body_stored": keep_body},
        "raw_body": received.raw_body if keep_body else b"",
    }
