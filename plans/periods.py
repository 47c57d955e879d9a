"""Billing period arithmetic (pure; no Django import).

Periods are half-open `[start, end)` and always derived from the subscription's *anchor*, never
from the previous period's end: a cycle anchored on Jan 31 renews on Feb 28 (or 29) and then on
Mar 31 again, instead of drifting to the 28th forever. Times of day are kept as anchored (UTC).

A period is shown as the days it covers (`format_period`), everywhere: pages, emails, the
console, invoice lines and PDFs.
"""

import calendar
from datetime import UTC, datetime, time, timedelta

MONTH = "month"
YEAR = "year"
INTERVAL_MONTHS = {MONTH: 1, YEAR: 12}


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months, clamped to the last day of shorter months."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, interval: str, index: int) -> tuple[datetime, datetime]:
    """The `index`-th period after the anchor (index 0 starts at the anchor)."""
    step = INTERVAL_MONTHS[interval]
    return add_months(anchor, index * step), add_months(anchor, (index + 1) * step)


def period_index(anchor: datetime, interval: str, instant: datetime) -> int:
    """Index of the period of `anchor`'s cycle that contains `instant` (negative before it)."""
    step = INTERVAL_MONTHS[interval]
    months = (instant.year - anchor.year) * 12 + (instant.month - anchor.month)
    index = months // step
    # The month difference is an estimate: the anchor's day and time decide the exact edge.
    while add_months(anchor, index * step) > instant:
        index -= 1
    while add_months(anchor, (index + 1) * step) <= instant:
        index += 1
    return index


def period_containing(
    anchor: datetime, interval: str, instant: datetime
) -> tuple[datetime, datetime]:
    """The `[start, end)` period of the anchor's cycle that contains `instant`."""
    return period_bounds(anchor, interval, period_index(anchor, interval, instant))


def usage_period_containing(anchor: datetime, instant: datetime) -> tuple[datetime, datetime]:
    """Usage periods are monthly on every subscription, annual ones included (rule book §1)."""
    return period_containing(anchor, MONTH, instant)


def remaining_seconds(start: datetime, end: datetime, at: datetime) -> tuple[int, int]:
    """(remaining seconds, total seconds) of `[start, end)` seen from `at`, for proration (P6)."""
    total = int((end - start).total_seconds())
    remaining = int((end - max(min(at, end), start)).total_seconds())
    return remaining, total


def cycle_starting(anchor: datetime, start: datetime, interval: str) -> tuple[datetime, datetime]:
    """The billing cycle of `interval` that starts at `start`, a point of the anchor's monthly
    grid. Cycles always start and end on that grid, so a month -> year switch that turns the
    current month into the first month of an annual cycle never moves a usage period."""
    index = period_index(anchor, MONTH, start)
    if add_months(anchor, index) != start:
        raise ValueError(f"{start} is not a usage period boundary of the anchor {anchor}")
    return start, add_months(anchor, index + INTERVAL_MONTHS[interval])


# --- showing a period -------------------------------------------------------------------------

# Our own names: strftime("%b") follows the process locale. The short name is the first three
# letters ("Sep", "Jun").
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive datetime would be read in the server's zone and could print the wrong day.
        raise ValueError(f"a period's instants must be timezone-aware, got {at!r}")
    return at.astimezone(UTC)


def format_day(at: datetime, *, year: bool = True) -> str:
    """One day in UTC, as the pages, emails and PDFs write it: "Nov 21, 2026"."""
    day = _utc(at)
    return f"{_MONTHS[day.month - 1][:3]} {day.day}" + (f", {day.year}" if year else "")


def format_last_day(end: datetime) -> str:
    """The last day before a boundary, the day that holds its previous instant: a cycle or
    a service that stops at Jan 1, 2027 00:00 runs "until Dec 31, 2026". Its first day on the
    other side is format_day(end) ("from Jan 1, 2027"): one boundary, named two ways, each
    with its own word."""
    return format_day(end - timedelta(microseconds=1))


def format_period(start: datetime, end: datetime, *, month_by_name: bool = False) -> str:
    """A half-open period [start, end) as the days it covers, in UTC: "Nov 21 – Dec 20, 2026".

    The last day shown is the one holding the end's previous instant, never the exclusive end:
    [Nov 1, Dec 1) is "Nov 1 – Nov 30, 2026". The year is written once when both days share it
    and on both sides across a year end ("Dec 21, 2026 – Jan 20, 2027"); a one-day period is
    that day ("Nov 21, 2026"). With `month_by_name` (invoice lines), a whole calendar month is
    written by its name: "November 2026"."""
    first, after = _utc(start), _utc(end)
    whole_month = first.day == 1 and first.time() == time(0) and after == add_months(first, 1)
    if month_by_name and whole_month:
        return f"{_MONTHS[first.month - 1]} {first.year}"
    last = max(first, after - timedelta(microseconds=1))
    if first.date() == last.date():
        return format_day(first)
    return f"{format_day(first, year=first.year != last.year)} \u2013 {format_day(last)}"
