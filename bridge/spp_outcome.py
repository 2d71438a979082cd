"""What one answer from SPP (or its absence) comes to: the :class:`Outcome` and its classification.

The rules are docs/behaviour.md section 5's, for every endpoint alike: 2xx ok; 400/404/409/422
failed; 401/403/408/425/429/5xx and connection errors worth another try. What differs is
whether a request that may have reached SPP is **ambiguous**: a POST may have created
something, a GET cannot have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from bridge.status import AttemptOutcome

RETRYABLE_STATUSES = frozenset({401, 403, 408, 425, 429})
# SPP refuses the API token itself (401: unknown or revoked; 403: not allowed to create tickets):
# every request would meet the same answer, so delivery pauses (docs/behaviour.md section 5)
TOKEN_REFUSED_STATUSES = frozenset({401, 403})
REJECTED_STATUSES = frozenset({400, 404, 409, 422})
EXCERPT = 500


@dataclass
class Outcome:
    """What one call to SPP came to.

    ``result`` is ``delivered`` (SPP answered what was asked), ``retrying`` (worth trying again
    later) or ``failed`` (permanent). ``ambiguous`` means a POST may have taken effect although
    we did not see the answer. Which id is set depends on the call: ``ticket_id`` (create or
    read a ticket), ``message_id`` (post a message), ``client_id`` (find or create a client).
    ``found`` is set by a client look-up only: False is "no such client", a result, not an error.
    ``resource`` is the JSON object read (the ticket, the client found), where the caller needs it.
    """

    result: AttemptOutcome
    duration_ms: int
    http_status: int | None = None
    ticket_id: int | None = None
    spp_request_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    ambiguous: bool = False
    response_excerpt: str | None = None
    message_id: int | None = None
    client_id: int | None = None
    found: bool | None = None
    resource: dict[str, Any] | None = None

    @property
    def token_refused(self) -> bool:
        """SPP refused the API token, not this request."""
        return self.http_status in TOKEN_REFUSED_STATUSES

    @property
    def ok(self) -> bool:
        return self.result == AttemptOutcome.DELIVERED


def not_sent(what: str, errors: object) -> Outcome:
    return Outcome(AttemptOutcome.FAILED, 0, error=f"invalid {what}, not sent: {errors}")


def transport_failure(exc: requests.RequestException, duration_ms: int, may_have_effect: bool = True) -> Outcome:
    """No answer. ``may_have_effect``: the request was a POST, which SPP may have carried out."""
    if isinstance(exc, requests.ConnectTimeout) or _never_connected(exc):
        return Outcome(AttemptOutcome.RETRYING, duration_ms, error=f"could not connect to SPP: {_short(exc)}")
    if isinstance(exc, requests.ReadTimeout):
        return Outcome(
            AttemptOutcome.RETRYING,
            duration_ms,
            ambiguous=may_have_effect,
            error="SPP did not answer within the read timeout",
        )
    # reset or closed after the request went out: a POST may have been carried out
    return Outcome(
        AttemptOutcome.RETRYING, duration_ms, ambiguous=may_have_effect, error=f"connection to SPP lost: {_short(exc)}"
    )


def _never_connected(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached SPP (refused, DNS, connect timeout)."""
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", inner)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def classify(
    response: requests.Response,
    duration_ms: int,
    what: str = "ticket",
    accept: Callable[[requests.Response, dict[str, Any]], str | None] | None = None,
) -> Outcome:
    """An answer -> an Outcome. ``what`` names the request in errors ("SPP rejected the ticket").

    ``accept`` reads a 2xx answer: it fills the common fields (ids, ``found``, ``resource``) and
    returns None, or returns why the answer is unusable. Without it, a 2xx needs an integer
    ``id`` (top level or under ``data``), which goes to ``ticket_id``.
    """
    status = response.status_code
    common: dict[str, Any] = {
        "http_status": status,
        "spp_request_id": response.headers.get("X-Api-Identifier"),
        "response_excerpt": response.text[:EXCERPT],
    }
    if 200 <= status < 300:
        problem = (accept or _accept_ticket)(response, common)
        if problem is not None:
            # SPP said yes to something we cannot use: after a POST, re-sending could duplicate it
            return Outcome(AttemptOutcome.FAILED, duration_ms, error=f"SPP answered {status} {problem}", **common)
        return Outcome(AttemptOutcome.DELIVERED, duration_ms, **common)
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Outcome(
            AttemptOutcome.RETRYING, duration_ms, error=f"SPP answered {status}", retry_after=retry_after, **common
        )
    reason = f"rejected the {what}" if status in REJECTED_STATUSES else "gave an unexpected answer"
    return Outcome(AttemptOutcome.FAILED, duration_ms, error=f"SPP {reason}: HTTP {status}", **common)


def json_body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def resource_of(response: requests.Response) -> dict[str, Any] | None:
    """The JSON object answered, unwrapped from ``data`` as Laravel resources may arrive."""
    body = json_body(response)
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        body = body["data"]
    return body if isinstance(body, dict) else None


def integer_id(resource: dict[str, Any] | None) -> int | None:
    value = resource.get("id") if resource is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _accept_ticket(response: requests.Response, common: dict[str, Any]) -> str | None:
    common["ticket_id"] = integer_id(resource_of(response))
    return "without a ticket id" if common["ticket_id"] is None else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
