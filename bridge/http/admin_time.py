"""Times on the admin page: the list's time range (``since``) and "3 min ago" with the UTC time on hover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from markupsafe import Markup

from bridge.errors import BadFilter

# the named ranges of the list's time filter, in the order the form offers them
RANGES: dict[str, tuple[str, timedelta]] = {
    "1h": ("last hour", timedelta(hours=1)),
    "24h": ("last 24 h", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}


def parse_since(raw: str, now: datetime) -> datetime | None:
    """``since`` as a moment: empty is no bound, a named range counts back from ``now``, else an
    ISO 8601 time (UTC when it names no zone). Raises BadFilter for anything else."""
    raw = raw.strip()
    if not raw or raw == "all":
        return None
    if raw in RANGES:
        return now - RANGES[raw][1]
    try:
        # a "+02:00" typed into a URL arrives as " 02:00"
        moment = datetime.fromisoformat(raw.replace(" ", "+") if "T" in raw else raw)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        names = ", ".join(RANGES)
        raise BadFilter(
            f"since must be one of {names}, all, or an ISO 8601 time such as 2026-01-31T09:00:00Z"
        ) from None


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def ago(value: datetime, now: datetime, due: bool = False) -> str:
    """How long before (or after) ``now``: "just now", "3 min ago", "in 2 h", "4 days ago"; a
    ``due`` time (a next attempt) that has come is "due now", or "due 5 min ago"."""
    seconds = (now - value).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "due now" if due or future else "just now"
    if seconds < 3600:
        amount = f"{max(round(seconds / 60), 1)} min"
    elif seconds < 48 * 3600:
        amount = f"{round(seconds / 3600)} h"
    else:
        amount = f"{round(seconds / 86400)} days"
    if future:
        return f"in {amount}"
    return f"due {amount} ago" if due else f"{amount} ago"


def moment(value: datetime | None, now: datetime, due: bool = False) -> Markup:
    """A ``<time>`` element: relative text, the absolute UTC time as its title and datetime."""
    if value is None:
        return Markup("—")
    value = value.astimezone(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        value.isoformat(timespec="seconds").replace("+00:00", "Z"), when(value), ago(value, now, due)
    )
