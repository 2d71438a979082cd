"""The bridge's named errors. ``bridge/http/errors.py`` maps them to HTTP answers in one place."""

from __future__ import annotations

from config.settings import ConfigError

__all__ = [
    "BadFilter",
    "BadPayload",
    "BridgeError",
    "ConfigError",
    "MappingFailed",
    "NotWaiting",
    "PayloadTooLarge",
    "RateLimited",
    "RejectedPayload",
    "StoreUnavailable",
    "TooManyAttempts",
    "Unauthorized",
    "UnknownEvent",
    "UnknownSource",
    "UnsupportedMediaType",
]


class BridgeError(Exception):
    """Something a caller of the bridge did or sent that we answer with a 4xx or 503."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class Unauthorized(BridgeError):
    """Missing or wrong secret, bad signature or stale timestamp.

    ``scheme`` names the credentials expected, for the ``WWW-Authenticate`` challenge: HTTP Basic
    for the kinds whose senders put ``user:pass`` in the URL, Bearer for the admin token, none
    for signatures (no HTTP scheme answers them).
    """

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, scheme: str | None = "Bearer") -> None:
        super().__init__(message)
        self.scheme = scheme


class TooManyRequests(BridgeError):
    """A 429: ``retry_after`` is the number of seconds until the caller may try again."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyAttempts(TooManyRequests):
    """Too many wrong admin tokens from one client address lately."""

    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed attempts from this address: retry in {retry_after} s", retry_after=retry_after
        )


class UnknownSource(BridgeError):
    status = 404
    code = "unknown_source"


class UnknownEvent(BridgeError):
    status = 404
    code = "unknown_event"


class NotWaiting(BridgeError):
    """ "Retry now" or "cancel" of an event that is not ``queued`` or ``retrying``: delivered,
    failed, discarded, or in a worker's hands (``delivering``)."""

    status = 409
    code = "not_waiting"


class PayloadTooLarge(BridgeError):
    """The body is larger than the source's ``max_body_bytes``, or BRIDGE_MAX_BODY_BYTES."""

    status = 413
    code = "payload_too_large"


class RateLimited(TooManyRequests):
    """More new events from one sender than the source's ``rate_limit``; nothing was stored."""

    code = "rate_limited"


class UnsupportedMediaType(BridgeError):
    status = 415
    code = "unsupported_media_type"


class BadPayload(BridgeError):
    """The body cannot be parsed at all."""

    status = 400
    code = "bad_payload"


class BadFilter(BridgeError):
    """A list filter (the admin page's ``since``) that names no time."""

    status = 400
    code = "bad_filter"


class RejectedPayload(BridgeError):
    """Parsed, but lacks what the kind requires.

    422 by default; providers whose sender understands another code as "rejected, do
    not retry" (Mailgun 406, Postmark 403) pass it as ``status``.
    """

    status = 422
    code = "unprocessable"

    def __init__(self, message: str, *, status: int | None = None, errors: object = None) -> None:
        super().__init__(message, status=status)
        self.errors = errors


class StoreUnavailable(BridgeError):
    """The database did not answer; the sender should retry."""

    status = 503
    code = "database_unavailable"


class Unmappable(BridgeError):
    """Answered when a replay or preview cannot become a ticket; the code is the mapping's reason."""

    status = 422

    def __init__(self, exc: MappingFailed, what: str) -> None:
        super().__init__(f"{what}: {exc.detail}")
        self.code = exc.reason


class MappingFailed(Exception):
    """The message could not be turned into a ticket request; the event is stored as failed.

    ``reason`` is a short machine code (``unresolved_user``, ``invalid_ticket_request``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
