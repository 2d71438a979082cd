"""Scripted misbehaviour: the steps ``POST /_sandbox/script`` queues, one script per endpoint."""

from __future__ import annotations

from dataclasses import dataclass

# what a script can target; "tickets" is POST /api/tickets, the endpoint the bridge delivers to
ENDPOINTS = ("tickets", "messages", "clients", "create_client")
NORMAL_STATUSES = frozenset({200, 201})


@dataclass(frozen=True)
class Step:
    """A scripted answer; kind is status (200 or 201 = handle normally), hang, drop, reset or noid."""

    kind: str
    status: int = 201
    retry_after: int | None = None
    seconds: float = 0.0

    @property
    def normal(self) -> bool:
        return self.kind == "status" and self.status in NORMAL_STATUSES


FAULT = Step(kind="fault", status=503)


def parse_step(raw: int | str) -> Step:
    """Turn ``503``, ``"429:7"``, ``"hang:2"``, ``"drop:2"``, ``"reset"`` or ``"noid"`` into a Step."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(f"script step {raw!r}: expected an HTTP status or a string")
    text = str(raw).strip()
    if text in ("reset", "noid"):
        return Step(kind=text)
    head, _, arg = text.partition(":")
    try:
        if head in ("hang", "drop"):
            step = Step(kind=head, seconds=float(arg))
        else:
            step = Step(kind="status", status=int(head), retry_after=int(arg) if arg else None)
    except ValueError:
        raise ValueError(f"script step {raw!r}: not a number where one is expected") from None
    if step.status not in NORMAL_STATUSES and not 400 <= step.status <= 599:
        raise ValueError(f"script step {raw!r}: status must be 200, 201 or 400-599")
    if step.retry_after is not None and step.status not in (429, 503):
        raise ValueError(f"script step {raw!r}: Retry-After only goes with 429 or 503")
    if step.seconds < 0 or (step.retry_after or 0) < 0:
        raise ValueError(f"script step {raw!r}: must not be negative")
    return step


def check_endpoint(endpoint: str) -> str:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}: one of {', '.join(ENDPOINTS)}")
    return endpoint
