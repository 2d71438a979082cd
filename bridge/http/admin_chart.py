"""The event list's chart: accepted, delivered and failed per hour, as inline SVG geometry.

The page's Content-Security-Policy allows no inline style and no script, so the template draws
with SVG attributes and classes styled by ``admin.css``; every bar carries its numbers as a
``<title>`` and the page repeats them in a table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

SERIES = ("accepted", "delivered", "failed")
WIDTH, HEIGHT = 720, 160
PLOT_TOP, PLOT_BOTTOM = 8, 136  # bars stand on PLOT_BOTTOM; hour labels below it
BAR_WIDTH = 7
LABEL_EVERY = 3  # hours


def chart(hours: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars (x, y, width, height, series, title) per hour and series, axis labels, the scale's top."""
    top = max((h[name] for h in hours for name in SERIES), default=0)
    scale = max(_nice(top), 1)
    slot = WIDTH / max(len(hours), 1)
    bars, labels, table = [], [], []
    for number, hour in enumerate(hours):
        start: datetime = hour["start"]
        span = f"{start:%H}:00 to {(start.hour + 1) % 24:02d}:00 UTC"
        table.append({"span": span, **{name: hour[name] for name in SERIES}})
        left = number * slot + (slot - BAR_WIDTH * len(SERIES)) / 2
        for place, name in enumerate(SERIES):
            height = (PLOT_BOTTOM - PLOT_TOP) * hour[name] / scale
            bars.append(
                {
                    "series": name,
                    "x": round(left + place * BAR_WIDTH, 1),
                    "y": round(PLOT_BOTTOM - height, 1),
                    "width": BAR_WIDTH - 1,
                    "height": round(height, 1),
                    "title": f"{span}: {hour[name]} {name}",
                }
            )
        if number % LABEL_EVERY == 0:
            labels.append({"x": round(number * slot + slot / 2, 1), "text": f"{start:%H}:00"})
    totals = {name: sum(h[name] for h in hours) for name in SERIES}
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "baseline": PLOT_BOTTOM,
        "top": PLOT_TOP,
        "scale": scale,
        "bars": bars,
        "labels": labels,
        "label_y": HEIGHT - 6,
        "table": table,
        "totals": totals,
        "series": SERIES,
    }


def _nice(value: int) -> int:
    """The scale's top: ``value`` rounded up to 1, 2 or 5 times a power of ten."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if value <= step * factor:
                return step * factor
        step *= 10
