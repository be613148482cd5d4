"""The geometry of the spend chart: a bar per day for delivered spend, and one beside it for money at risk.

The page's template draws it as inline SVG, so the chart needs no script and no image request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH = 720
HEIGHT = 220
LEFT = 64
RIGHT = WIDTH - 8
TOP = 12
BOTTOM = HEIGHT - 28
MAX_LABELS = 8

SERIES = (("delivered", "#2b6cb0", "delivered"), ("at-risk", "#dd6b20", "paid, not delivered"))


@dataclass(frozen=True)
class Bar:
    """One bar: where it is drawn, and the day and amount its tooltip names."""

    kind: str
    colour: str
    what: str
    day: str
    usd: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Mark:
    """A label on an axis: its position and text (or amount)."""

    x: float = 0.0
    y: float = 0.0
    text: str = ""
    usd: float = 0.0


@dataclass(frozen=True)
class Chart:
    """Everything the template needs to draw the chart."""

    bars: list[Bar] = field(default_factory=list)
    ticks: list[Mark] = field(default_factory=list)
    labels: list[Mark] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = RIGHT
    base: int = BOTTOM


def spend_chart(days: list[tuple[str, float, float]]) -> Chart:
    """Lay out ``(day, delivered_usd, at_risk_usd)`` per day as paired bars on a shared USD scale."""
    top = max([max(delivered, risk) for _, delivered, risk in days] + [0.01])
    plot_h = BOTTOM - TOP
    slot = (RIGHT - LEFT) / max(len(days), 1)
    bar = max(1.0, slot * 0.4)
    every = max(1, -(-len(days) // MAX_LABELS))
    chart = Chart(ticks=[Mark(y=BOTTOM - plot_h * f, usd=top * f) for f in (0.0, 0.5, 1.0)])
    for index, (day, *amounts) in enumerate(days):
        x = LEFT + index * slot + (slot - 2 * bar) / 2
        for offset, usd, (kind, colour, what) in zip((0.0, bar), amounts, SERIES, strict=True):
            height = plot_h * usd / top
            chart.bars.append(Bar(kind, colour, what, day, usd, x + offset, BOTTOM - height, bar, height))
        if index % every == 0:
            chart.labels.append(Mark(x=x + bar, text=day[5:]))
    return chart
