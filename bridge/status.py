"""One vocabulary for where an event stands and what one attempt to deliver it came to.

Both are stored as their string values (``events.status``, ``attempts.outcome``) and shown as
such by the admin API, so a value never changes once released (docs/behaviour.md section 5).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"  # stored, due for delivery
    DELIVERING = "delivering"  # leased by a worker, request in flight
    RETRYING = "retrying"  # an attempt failed in a way worth trying again; due at next_attempt_at
    DELIVERED = "delivered"  # SPP created the ticket; ticket_id recorded
    FAILED = "failed"  # cannot be mapped, refused by SPP, or out of attempts; replayable
    DISCARDED = "discarded"  # stored but never to become a ticket (auto-reply, spam); replayable


# what a worker may claim (the partial index ix_events_due covers exactly these)
DUE = (Status.QUEUED, Status.RETRYING)
# not finished yet: the queue depth
PENDING = (*DUE, Status.DELIVERING)
# what a replay takes back to queued without force
REPLAYABLE = (Status.FAILED, Status.DISCARDED)
# done with: retention deletes their request and message after a while (ix_events_purgeable)
ENDED = (Status.DELIVERED, Status.DISCARDED, Status.FAILED)


class AttemptOutcome(StrEnum):
    """What one request to SPP came to; the event's next status has the same name."""

    DELIVERED = "delivered"
    RETRYING = "retrying"  # worth trying again later (the retry policy may still give up)
    FAILED = "failed"  # permanent

    @property
    def status(self) -> Status:
        return Status(self.value)


class PauseReason(StrEnum):
    """Why delivery is paused for every worker (``delivery_state.reason``)."""

    TOKEN_REFUSED = "token_refused"  # SPP answers 401 or 403 to the API token


class Step(StrEnum):
    """What one request to SPP was for (``attempts.step``): an event is delivered in up to three
    steps, each recorded on its own (docs/conversations.md)."""

    CLIENT = "client"  # look the sender up among SPP's clients, or create the client
    TICKET = "ticket"
    MESSAGE = "message"  # the ticket's first message, or a follow-up's message on an earlier ticket


class ClientHow(StrEnum):
    """How an event's client was found (``events.client_how``)."""

    MAPPED = "mapped"  # the sources file: ticket.user_id, or a clients map
    FOUND = "found"  # SPP's client with the sender's email (looked up now or earlier)
    CREATED = "created"  # a new SPP client, made for this sender
    DEFAULT = "default"  # defaults.user_id
