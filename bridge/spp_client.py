"""The SPP API client: one ``requests.Session``, one call, one :class:`Outcome`.

It knows nothing of Flask or the database; the worker decides what an outcome means for
the event (``bridge/retry.py``). The HTTP layer never retries a POST by itself, so a
request that may have reached SPP is only ever re-sent by a recorded decision.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.retry import Retry

from bridge.spp_schema import validate_ticket_request
from bridge.status import AttemptOutcome
from bridge.version import __version__

USER_AGENT = f"spp-ticket-bridge/{__version__}"
RETRYABLE_STATUSES = frozenset({401, 403, 408, 425, 429})
# SPP refuses the API token itself (401: unknown or revoked; 403: not allowed to create tickets):
# every request would meet the same answer, so delivery pauses (docs/behaviour.md section 5)
TOKEN_REFUSED_STATUSES = frozenset({401, 403})
REJECTED_STATUSES = frozenset({400, 404, 409, 422})
EXCERPT = 500


@dataclass
class Outcome:
    """What one POST to SPP came to.

    ``result`` is ``delivered``, ``retrying`` (worth trying again later) or ``failed``
    (permanent). ``ambiguous`` means the request may have created a ticket although we
    did not see the answer.
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

    @property
    def token_refused(self) -> bool:
        """SPP refused the API token, not this ticket."""
        return self.http_status in TOKEN_REFUSED_STATUSES


class SppClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        api_version: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        pool_size: int = 4,
    ) -> None:
        self.url = base_url.rstrip("/") + "/api/tickets"
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        # The environment is read once, here: with trust_env requests looks up proxies and
        # ~/.netrc on every call (costlier than a local request), and a .netrc entry for the
        # SPP host would replace our bearer token with basic auth.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(self.url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.session.verify = bundle
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=Retry(total=0, read=False))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "X-Api-Version": api_version,
                "User-Agent": USER_AGENT,
            }
        )

    def create_ticket(self, ticket_request: dict[str, Any], request_id: str | None = None) -> Outcome:
        errors = validate_ticket_request(ticket_request)
        if errors:
            return Outcome(AttemptOutcome.FAILED, 0, error=f"invalid StoreTicketRequest, not sent: {errors}")
        headers = {"X-Request-ID": request_id} if request_id else None
        started = time.monotonic()
        try:
            response = self.session.post(
                self.url, json=ticket_request, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            return _transport_failure(exc, _ms(started))
        return _classify(response, _ms(started))

    def close(self) -> None:
        self.session.close()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _transport_failure(exc: requests.RequestException, duration_ms: int) -> Outcome:
    if isinstance(exc, requests.ConnectTimeout) or _never_connected(exc):
        return Outcome(AttemptOutcome.RETRYING, duration_ms, error=f"could not connect to SPP: {_short(exc)}")
    if isinstance(exc, requests.ReadTimeout):
        return Outcome(
            AttemptOutcome.RETRYING, duration_ms, ambiguous=True, error="SPP did not answer within the read timeout"
        )
    # reset or closed after the request went out: SPP may have created the ticket
    return Outcome(AttemptOutcome.RETRYING, duration_ms, ambiguous=True, error=f"connection to SPP lost: {_short(exc)}")


def _never_connected(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached SPP (refused, DNS, connect timeout)."""
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", inner)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _classify(response: requests.Response, duration_ms: int) -> Outcome:
    status = response.status_code
    common: dict[str, Any] = {
        "http_status": status,
        "spp_request_id": response.headers.get("X-Api-Identifier"),
        "response_excerpt": response.text[:EXCERPT],
    }
    if 200 <= status < 300:
        ticket_id = _ticket_id(response)
        if ticket_id is None:
            # SPP said yes without an id: re-sending could create a second ticket
            return Outcome(
                AttemptOutcome.FAILED, duration_ms, error=f"SPP answered {status} without a ticket id", **common
            )
        return Outcome(AttemptOutcome.DELIVERED, duration_ms, ticket_id=ticket_id, **common)
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Outcome(
            AttemptOutcome.RETRYING, duration_ms, error=f"SPP answered {status}", retry_after=retry_after, **common
        )
    reason = "rejected the ticket" if status in REJECTED_STATUSES else "gave an unexpected answer"
    return Outcome(AttemptOutcome.FAILED, duration_ms, error=f"SPP {reason}: HTTP {status}", **common)


def _ticket_id(response: requests.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        body = body["data"]  # Laravel resources may arrive wrapped in "data"
    value = body.get("id") if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
