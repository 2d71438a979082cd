"""The SPP API client: one ``requests.Session``, one call, one :class:`Outcome`.

It knows nothing of Flask or the database; the worker decides what an outcome means for
the event (``bridge/retry.py``). The HTTP layer never retries a request by itself, so a
POST that may have reached SPP is only ever re-sent by a recorded decision. What the bridge
relies on from each endpoint is in docs/spp-api.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bridge.spp_outcome import (
    EXCERPT,
    REJECTED_STATUSES,
    RETRYABLE_STATUSES,
    TOKEN_REFUSED_STATUSES,
    Outcome,
    classify,
    integer_id,
    json_body,
    not_sent,
    parse_retry_after,
    resource_of,
    transport_failure,
)
from bridge.spp_schema import validate_ticket_request
from bridge.status import AttemptOutcome
from bridge.version import __version__

__all__ = [
    "EXCERPT",
    "REJECTED_STATUSES",
    "RETRYABLE_STATUSES",
    "TOKEN_REFUSED_STATUSES",
    "USER_AGENT",
    "FileUpload",
    "Outcome",
    "SppClient",
    "parse_retry_after",
]

USER_AGENT = f"spp-ticket-bridge/{__version__}"
EMAIL_FILTER = "filters[email][$eq]"
CLIENT_PAGE_SIZE = 100


@dataclass(frozen=True)
class FileUpload:
    """One attachment of a message: sent as an ``attachments[]`` part of a multipart body."""

    filename: str
    content: bytes
    content_type: str


class SppClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        api_version: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        pool_size: int = 4,
        client_pages: int = 10,
    ) -> None:
        """``client_pages``: how many pages of clients :meth:`find_client` reads when SPP
        ignores the email filter, before it gives up rather than answer "not found"."""
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/api/tickets"
        self.timeout = (connect_timeout, read_timeout)
        self.client_pages = client_pages
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
        # no Content-Type here: requests sets application/json for a JSON body and the
        # multipart boundary for files, and a GET has no body to describe
        self.session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "X-Api-Version": api_version,
                "User-Agent": USER_AGENT,
            }
        )

    def _send(self, method: str, url: str, request_id: str | None, **kwargs: Any) -> requests.Response | Outcome:
        """The answer, or the Outcome of having none (ambiguous only for a POST)."""
        headers = {"X-Request-ID": request_id} if request_id else None
        started = time.monotonic()
        try:
            return self.session.request(
                method, url, headers=headers, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            return transport_failure(exc, _ms(started), may_have_effect=method == "POST")

    def create_ticket(self, ticket_request: dict[str, Any], request_id: str | None = None) -> Outcome:
        """``POST /api/tickets``; the new ticket's id in ``ticket_id``."""
        errors = validate_ticket_request(ticket_request)
        if errors:
            return not_sent("StoreTicketRequest", errors)
        started = time.monotonic()
        answer = self._send("POST", self.url, request_id, json=ticket_request)
        return answer if isinstance(answer, Outcome) else classify(answer, _ms(started))

    def post_message(
        self,
        ticket_id: int | str,
        message: str,
        user_id: int | None = None,
        files: Sequence[FileUpload] = (),
        request_id: str | None = None,
    ) -> Outcome:
        """``POST /api/ticket_messages/{ticket}``; the new message's id in ``message_id``.

        JSON without files; with files, multipart/form-data with one ``attachments[]`` part per
        file (SPP's reference types attachments as binary in a JSON body, which JSON cannot carry).
        ``ticket_id`` is the ticket's id or its 8-character number.
        """
        errors = _message_errors(ticket_id, message, user_id, files)
        if errors:
            return not_sent("message", errors)
        url = f"{self.base_url}/api/ticket_messages/{quote(str(ticket_id), safe='')}"
        fields: dict[str, Any] = {"message": message}
        if user_id is not None:
            fields["user_id"] = user_id
        if files:
            body: dict[str, Any] = {
                "data": {key: str(value) for key, value in fields.items()},
                "files": [("attachments[]", (f.filename, f.content, f.content_type)) for f in files],
            }
        else:
            body = {"json": fields}
        started = time.monotonic()
        answer = self._send("POST", url, request_id, **body)
        if isinstance(answer, Outcome):
            return answer
        return classify(answer, _ms(started), "message", _accept_id("message_id", "message"))

    def get_ticket(self, ticket_id: int | str, request_id: str | None = None) -> Outcome:
        """``GET /api/tickets/{ticket}``; the TicketResource (with ``messages``) in ``resource``.

        A ticket SPP does not have is ``failed`` with ``http_status`` 404.
        """
        url = f"{self.base_url}/api/tickets/{quote(str(ticket_id), safe='')}"
        started = time.monotonic()
        answer = self._send("GET", url, request_id)
        if isinstance(answer, Outcome):
            return answer
        return classify(answer, _ms(started), "ticket look-up", _accept_id("ticket_id", "ticket"))

    def find_client(self, email: str, request_id: str | None = None) -> Outcome:
        """``GET /api/clients`` filtered by email; the client's id in ``client_id``.

        SPP's filter on email is inferred from its generic filter rules, not documented, so
        every row's ``email`` is compared (case-insensitively) and the first that matches
        counts. An answer that lists other clients shows the filter was ignored: then the
        following pages are read too, up to ``client_pages``; past that the look-up fails
        rather than answer "not found" for a client that may well exist. Not found is
        ``delivered`` with ``found`` False.
        """
        wanted = email.strip() if isinstance(email, str) else ""
        if not _is_email(wanted):
            return not_sent("email address", repr(email))
        url = f"{self.base_url}/api/clients"
        spent = 0
        outcome = Outcome(AttemptOutcome.FAILED, 0)
        for number in range(1, self.client_pages + 1):
            params = {EMAIL_FILTER: wanted, "limit": CLIENT_PAGE_SIZE, "page": number}
            started = time.monotonic()
            answer = self._send("GET", url, request_id, params=params)
            spent += _ms(started)
            if isinstance(answer, Outcome):
                answer.duration_ms = spent
                return answer
            scan = _ClientScan(wanted.casefold())
            outcome = classify(answer, spent, "client look-up", scan.accept)
            if not outcome.ok or outcome.found or not scan.more_pages:
                return outcome
        outcome.result, outcome.found = AttemptOutcome.FAILED, None
        outcome.error = (
            f"SPP ignored the email filter and {wanted} is not in its first {self.client_pages} pages of clients"
        )
        return outcome

    def create_client(self, email: str, name_f: str = "", name_l: str = "", request_id: str | None = None) -> Outcome:
        """``POST /api/clients``; the new client's id in ``client_id``.

        Blank names are left out rather than sent empty. An email SPP already has is refused
        (a 422 in the sandbox): the caller looks the client up again.
        """
        if not _is_email(email.strip() if isinstance(email, str) else ""):
            return not_sent("email address", repr(email))
        body = {"email": email.strip()}
        for key, value in (("name_f", name_f), ("name_l", name_l)):
            if value and value.strip():
                body[key] = value.strip()
        started = time.monotonic()
        answer = self._send("POST", f"{self.base_url}/api/clients", request_id, json=body)
        if isinstance(answer, Outcome):
            return answer
        return classify(answer, _ms(started), "client", _accept_id("client_id", "client"))

    def close(self) -> None:
        self.session.close()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _is_email(value: str) -> bool:
    local, at, domain = value.partition("@")
    return bool(local and at and domain) and "@" not in domain and not any(c.isspace() for c in value)


def _message_errors(ticket_id: Any, message: Any, user_id: Any, files: Sequence[Any]) -> dict[str, str]:
    errors = {}
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, int | str) or not str(ticket_id).strip():
        errors["ticket"] = f"{ticket_id!r} is not a ticket id or number"
    if not isinstance(message, str) or not message.strip():
        errors["message"] = "must be non-blank text"
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, int)):
        errors["user_id"] = f"{user_id!r} is not an integer"
    for index, upload in enumerate(files):
        if not (
            isinstance(upload, FileUpload)
            and isinstance(upload.content, bytes)
            and upload.filename.strip()
            and "/" in upload.content_type
        ):
            errors[f"attachments.{index}"] = "needs a file name, bytes and a content type"
    return errors


def _accept_id(field: str, what: str) -> Callable[[requests.Response, dict[str, Any]], str | None]:
    """A 2xx reader that wants an integer ``id`` in the resource, kept as ``field``."""

    def accept(response: requests.Response, common: dict[str, Any]) -> str | None:
        resource = resource_of(response)
        common[field] = integer_id(resource)
        if common[field] is None:
            return f"without a {what} id"
        common["resource"] = resource
        return None

    return accept


class _ClientScan:
    """Reads one page of ``GET /api/clients`` for the client with a given (case-folded) email."""

    def __init__(self, wanted: str) -> None:
        self.wanted = wanted
        self.more_pages = False

    def accept(self, response: requests.Response, common: dict[str, Any]) -> str | None:
        body = json_body(response)
        rows = body.get("data") if isinstance(body, dict) else body
        if not isinstance(rows, list):
            return "without a list of clients"
        for row in rows:
            email = row.get("email") if isinstance(row, dict) else None
            if isinstance(email, str) and email.strip().casefold() == self.wanted:
                common["client_id"] = integer_id(row)
                if common["client_id"] is None:
                    return "with the client but without its id"
                common.update(found=True, resource=row)
                return None
        common["found"] = False
        # rows that are not the client mean the filter was ignored: the client may be further on
        self.more_pages = bool(rows) and isinstance(body, dict) and _has_next_page(body)
        return None


def _has_next_page(page: dict[str, Any]) -> bool:
    links, meta = page.get("links"), page.get("meta")
    if isinstance(links, dict) and links.get("next"):
        return True
    if isinstance(meta, dict):
        current, last = meta.get("current_page"), meta.get("last_page")
        return isinstance(current, int) and isinstance(last, int) and current < last
    return False
