"""Daily usage charts as plain SVG geometry (pure: no Django). The template draws the shapes.

Why not a charting library: the page needs one kind of chart (cumulative daily bars against an
allowance, with the forecast), it must render on the server and work offline, and a few
rectangles in a template are easier to style and test than a generated SVG document.
"""

from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 900
HEIGHT = 170
PAD_LEFT = 0  # labels are HTML under the chart: they stay readable on a phone
PAD_BOTTOM = 2
PAD_TOP = 6


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    total: int  # cumulative units at the end of the day
    added: int  # units that day


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    y_max: int
    allowance_y: float | None  # the allowance line, when there is one
    forecast: tuple[float, float, float, float] | None  # x1, y1, x2, y2 of the projection
    axis_y: float  # y of the x axis
    first_label: str
    last_label: str
    left: int = PAD_LEFT


def period_days(start: date, last: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((last - start).days + 1)]


def _nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^n at or above value (readable axis tops)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def cumulative_chart(
    *,
    days: list[date],
    counts: dict[date, int],
    today: date,
    included: int | None,
    forecast: int,
) -> Chart:
    """Bars of cumulative use per day up to today, the allowance as a line, and a dashed
    projection from today's total to the forecast at the end of the period."""
    plot_w = WIDTH - PAD_LEFT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    axis_y = float(HEIGHT - PAD_BOTTOM)
    y_max = _nice_max(max(forecast, included or 0, sum(counts.values()), 1))
    slot = plot_w / max(len(days), 1)

    def y_of(value: int) -> float:
        return round(axis_y - plot_h * value / y_max, 1)

    bars = []
    total = 0
    for index, day in enumerate(days):
        if day > today:
            break
        added = counts.get(day, 0)
        total += added
        top = y_of(total)
        bars.append(
            Bar(
                x=round(PAD_LEFT + index * slot + slot * 0.15, 1),
                y=top,
                width=round(slot * 0.7, 1),
                height=round(axis_y - top, 1),
                day=day,
                total=total,
                added=added,
            )
        )
    projection = None
    if bars and len(bars) < len(days):
        last = bars[-1]
        projection = (
            round(last.x + last.width / 2, 1),
            last.y,
            round(PAD_LEFT + plot_w - slot / 2, 1),
            y_of(forecast),
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=tuple(bars),
        y_max=y_max,
        allowance_y=y_of(included) if included else None,
        forecast=projection,
        axis_y=axis_y,
        first_label=days[0].strftime("%b %-d") if days else "",
        last_label=days[-1].strftime("%b %-d") if days else "",
    )
