"""Scripted misbehaviour: the steps ``POST /_sandbox/script`` queues."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """A scripted answer; kind is status (201 = handle normally), hang, reset or noid."""

    kind: str
    status: int = 201
    retry_after: int | None = None
    seconds: float = 0.0


FAULT = Step(kind="fault", status=503)


def parse_step(raw: int | str) -> Step:
    """Turn ``503``, ``"429:7"``, ``"hang:2"``, ``"reset"`` or ``"noid"`` into a Step."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(f"script step {raw!r}: expected an HTTP status or a string")
    text = str(raw).strip()
    if text in ("reset", "noid"):
        return Step(kind=text)
    head, _, arg = text.partition(":")
    try:
        if head == "hang":
            step = Step(kind="hang", seconds=float(arg))
        else:
            step = Step(kind="status", status=int(head), retry_after=int(arg) if arg else None)
    except ValueError:
        raise ValueError(f"script step {raw!r}: not a number where one is expected") from None
    if step.status != 201 and not 400 <= step.status <= 599:
        raise ValueError(f"script step {raw!r}: status must be 201 or 400-599")
    if step.retry_after is not None and step.status not in (429, 503):
        raise ValueError(f"script step {raw!r}: Retry-After only goes with 429 or 503")
    if step.seconds < 0 or (step.retry_after or 0) < 0:
        raise ValueError(f"script step {raw!r}: must not be negative")
    return step
