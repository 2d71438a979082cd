"""Delivering one claimed event step by step (docs/conversations.md): client, ticket, message.

The plan was made at intake (``bridge/conversation.py``); what each step has done is on the
event (``client_id``, ``ticket_id``, ``spp_message_id``, ``thread_of``), so a step that
succeeded is never repeated: a failure, a crash or a replay resumes at the first step not done.
Each :meth:`Run.next` makes at most one request to SPP and says what it came to; the worker
records it (``bridge/worker.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.spp_client import FileUpload, Outcome, SppClient
from bridge.status import PENDING, AttemptOutcome, ClientHow, Status, Step
from bridge.store.conversations import ClientBook, Earlier, Threads
from bridge.store.queue import Claim
from bridge.tickets import unresolved_user

# how soon a step that has to wait looks again: a follow-up whose ticket is being created, a
# client another worker is creating
WAIT_SECONDS = 2.0
# the longest a follow-up waits before it looks at its earlier event again
MAX_WAIT_SECONDS = 300.0


@dataclass
class StepResult:
    """What one step came to. With ``outcome`` a request was made: when it succeeded,
    ``changes`` are the event's new columns and ``final`` says whether the event is delivered.
    Without, nothing was sent: the event waits until ``wait_until``, or fails for ``failure``,
    or (neither) is delivered as it stands."""

    step: Step
    outcome: Outcome | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    final: bool = False
    wait_until: datetime | None = None
    reason: str | None = None
    failure: str | None = None


class Steps:
    """The worker's delivery steps; one :class:`Run` per claim."""

    def __init__(
        self, spp: SppClient, clients: ClientBook, threads: Threads, owner: str, hold_seconds: float = 120.0
    ) -> None:
        """``hold_seconds``: how long the right to create a client is held (the worker's lease)."""
        self.spp = spp
        self.clients = clients
        self.threads = threads
        self.owner = owner
        self.hold_seconds = hold_seconds

    def start(self, claim: Claim) -> Run:
        return Run(self, claim)


class Run:
    def __init__(self, steps: Steps, claim: Claim) -> None:
        self.steps = steps
        self.claim = claim
        self.plan: dict[str, Any] = claim.plan or {}
        self.looked_up = False  # SPP said, during this claim, that it has no client with the address
        self.earlier: Earlier | None = None
        self.threaded = False  # the earlier event was looked for

    def next(self, now: datetime) -> StepResult:
        claim, plan = self.claim, self.plan
        reply = plan.get("reply")
        if reply and claim.ticket_id is None and not self.threaded:
            self.threaded = True
            self.earlier = self.steps.threads.earlier_event(
                claim.event_id, reply["references"], reply.get("ticket_ref")
            )
            if self.earlier is not None and self.earlier.ticket_id is None:
                if self.earlier.status in PENDING:
                    return self._wait_for_ticket(self.earlier, now)
                self.earlier = None  # it ended without a ticket: this mail opens its own
        if claim.client_id is None and plan.get("client"):
            result = self._client(plan["client"], now)
            if result is not None:
                return result
        if self.earlier is not None and claim.ticket_id is None:
            if self._same_client(self.earlier):
                claim.ticket_id, claim.thread_of = self.earlier.ticket_id, self.earlier.event_id
                claim.changes.update(ticket_id=claim.ticket_id, thread_of=claim.thread_of)
            self.earlier = None  # joined, or a stranger's reply: a new ticket
        if claim.ticket_id is None:
            return self._ticket()
        message = plan.get("message")
        if message and claim.spp_message_id is None:
            return self._message(message, reply)
        return StepResult(Step.MESSAGE if message else Step.TICKET, final=True)

    def _same_client(self, earlier: Earlier) -> bool:
        """Whether this mail's sender is the client of the earlier ticket. The default user stands
        for every sender nobody named, so under it only the same address counts."""
        claim = self.claim
        if earlier.client_id is None or earlier.client_id != claim.client_id:
            return False
        if ClientHow.DEFAULT not in (earlier.client_how, claim.client_how):
            return True
        mine = ((self.plan.get("reply") or {}).get("sender") or "").strip().casefold()
        return bool(mine) and mine == (earlier.sender or "").strip().casefold()

    # --- the steps -------------------------------------------------------------------

    def _ticket(self) -> StepResult:
        claim = self.claim
        request = dict(claim.ticket_request)
        if claim.client_id is not None:
            request["user_id"] = claim.client_id
        outcome = self.steps.spp.create_ticket(request, claim.request_id)
        changes: dict[str, Any] = {"ticket_id": outcome.ticket_id, "spp_request_id": outcome.spp_request_id}
        if request != claim.ticket_request:  # the request as sent, with the client found at delivery
            changes["ticket_request"] = request
        if outcome.ok:
            claim.ticket_id = outcome.ticket_id
        return StepResult(Step.TICKET, outcome, changes, final=not self.plan.get("message"))

    def _message(self, message: dict[str, Any], reply: dict[str, Any] | None) -> StepResult:
        claim = self.claim
        assert claim.ticket_id is not None
        text = reply["text"] if reply and claim.thread_of else message["text"]
        stored = self.steps.threads.files(claim.event_id, message["files"])
        files = [FileUpload(name, content, content_type) for name, content_type, content in stored]
        outcome = self.steps.spp.post_message(claim.ticket_id, text, claim.client_id, files, claim.request_id)
        if outcome.ok:
            claim.spp_message_id = outcome.message_id
        return StepResult(Step.MESSAGE, outcome, {"spp_message_id": outcome.message_id}, final=True)

    def _client(self, plan: dict[str, Any], now: datetime) -> StepResult | None:
        """One request towards the client, or None when it is settled without one (remembered,
        or the default user after a "not found")."""
        email, book = plan["email"], self.steps.clients
        remembered = book.get(email)
        if remembered is not None and remembered.client_id is not None:
            self._settle_client(remembered.client_id, ClientHow.FOUND)
            return None
        if remembered is not None and remembered.being_created(self.steps.owner, now):
            return _creating_elsewhere(email, now)
        not_found = self.looked_up or (remembered is not None and remembered.fresh_not_found(now))
        if not_found and not plan["create"]:
            return self._fallback(plan)
        if not self.looked_up:
            return self._look_up(email, now)
        if not book.start_creating(email, self.steps.owner, now, self.steps.hold_seconds):
            return _creating_elsewhere(email, now)
        outcome = self.steps.spp.create_client(email, plan["name_f"], plan["name_l"], self.claim.request_id)
        if outcome.ok:
            book.remember(email, outcome.client_id, ClientHow.CREATED, now)
            return StepResult(Step.CLIENT, outcome, self._settle_client(outcome.client_id, ClientHow.CREATED))
        if not outcome.ambiguous:
            book.stop_creating(email, self.steps.owner)
        if outcome.http_status == 422:
            # SPP has a client with this address after all (made since the look-up, or the
            # filter missed it): worth a new look-up, not a failed event
            outcome.result = AttemptOutcome.RETRYING
            outcome.error = f"SPP refused to create a client for {email} (HTTP 422): looking it up again"
        return StepResult(Step.CLIENT, outcome)

    def _look_up(self, email: str, now: datetime) -> StepResult:
        outcome = self.steps.spp.find_client(email, self.claim.request_id)
        if not outcome.ok:
            return StepResult(Step.CLIENT, outcome)
        if outcome.found:
            self.steps.clients.remember(email, outcome.client_id, ClientHow.FOUND, now)
            return StepResult(Step.CLIENT, outcome, self._settle_client(outcome.client_id, ClientHow.FOUND))
        self.steps.clients.remember(email, None, "not_found", now)
        self.looked_up = True
        return StepResult(Step.CLIENT, outcome)

    def _fallback(self, plan: dict[str, Any]) -> StepResult | None:
        if plan["fallback"] is None:
            return StepResult(Step.CLIENT, failure=str(unresolved_user(plan["email"], looked_up=True)))
        self._settle_client(plan["fallback"], ClientHow.DEFAULT)
        return None

    def _settle_client(self, client_id: int | None, how: ClientHow) -> dict[str, Any]:
        claim = self.claim
        claim.client_id, claim.client_how = client_id, how
        changes = {"client_id": client_id, "client_how": how}
        claim.changes.update(changes)
        return changes

    def _wait_for_ticket(self, earlier: Earlier, now: datetime) -> StepResult:
        soonest = now + timedelta(seconds=WAIT_SECONDS)
        due = earlier.next_attempt_at if earlier.status == Status.RETRYING else None
        until = min(max(due or soonest, soonest), now + timedelta(seconds=MAX_WAIT_SECONDS))
        reason = f"waiting for the ticket of {earlier.event_id}, the mail this one answers ({earlier.status})"
        return StepResult(Step.TICKET, wait_until=until, reason=reason)


def _creating_elsewhere(email: str, now: datetime) -> StepResult:
    """Another worker holds the right to create this client: look again shortly."""
    reason = f"waiting: another worker is creating the SPP client for {email}"
    return StepResult(Step.CLIENT, wait_until=now + timedelta(seconds=WAIT_SECONDS), reason=reason)
