"""Billing period arithmetic (pure; no Django import).

Periods are half-open `[start, end)` and always derived from the subscription's *anchor*, never
from the previous period's end: a cycle anchored on Jan 31 renews on Feb 28 (or 29) and then on
Mar 31 again, instead of drifting to the 28th forever. Times of day are kept as anchored (UTC).

A third interval, `30d`, is for Shopify-channel subscriptions: Shopify bills every 30 days from
the instant the merchant approved the app subscription, so those periods are exactly 30 days
from the anchor (k * 30 days, no calendar), and their usage periods are the same 30-day periods.

A period is shown as the days it covers (`format_period`), everywhere: pages, emails, the
console, invoice lines and PDFs.
"""

import calendar
from datetime import UTC, datetime, time, timedelta

MONTH = "month"
YEAR = "year"
DAYS_30 = "30d"
INTERVAL_MONTHS = {MONTH: 1, YEAR: 12}
THIRTY_DAYS = timedelta(days=30)


def usage_interval(interval: str) -> str:
    """The interval of a subscription's usage periods: monthly on month and year cycles (rule
    book §1), the cycle itself on a 30-day one (Shopify's interval holds its usage)."""
    return DAYS_30 if interval == DAYS_30 else MONTH


def price_interval(interval: str) -> str:
    """The catalog interval whose prices and terms a subscription of `interval` pays: a 30-day
    cycle pays the monthly ones per period (Shopify's EVERY_30_DAYS price), never annual ones."""
    return MONTH if interval == DAYS_30 else interval


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months, clamped to the last day of shorter months."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, interval: str, index: int) -> tuple[datetime, datetime]:
    """The `index`-th period after the anchor (index 0 starts at the anchor)."""
    if interval == DAYS_30:
        # A fixed length, so no clamping: the time of day stays (UTC has no DST shifts).
        return anchor + index * THIRTY_DAYS, anchor + (index + 1) * THIRTY_DAYS
    step = INTERVAL_MONTHS[interval]
    return add_months(anchor, index * step), add_months(anchor, (index + 1) * step)


def period_index(anchor: datetime, interval: str, instant: datetime) -> int:
    """Index of the period of `anchor`'s cycle that contains `instant` (negative before it)."""
    if interval == DAYS_30:
        # timedelta // timedelta floors, so an instant before the anchor gets a negative index.
        return (instant - anchor) // THIRTY_DAYS
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


def usage_period_containing(
    anchor: datetime, instant: datetime, interval: str = MONTH
) -> tuple[datetime, datetime]:
    """The usage period holding `instant` on a subscription of `interval`: monthly on month
    and year cycles, annual ones included (rule book §1); the 30-day period on a 30d one."""
    return period_containing(anchor, usage_interval(interval), instant)


def remaining_seconds(start: datetime, end: datetime, at: datetime) -> tuple[int, int]:
    """(remaining seconds, total seconds) of `[start, end)` seen from `at`, for proration (P6)."""
    total = int((end - start).total_seconds())
    remaining = int((end - max(min(at, end), start)).total_seconds())
    return remaining, total


def cycle_starting(anchor: datetime, start: datetime, interval: str) -> tuple[datetime, datetime]:
    """The billing cycle of `interval` that starts at `start`, a point of the anchor's monthly
    grid. Cycles always start and end on that grid, so a month -> year switch that turns the
    current month into the first month of an annual cycle never moves a usage period. A 30d
    cycle lives on its own 30-day grid instead (it never switches to month or year)."""
    if interval == DAYS_30:
        index = period_index(anchor, DAYS_30, start)
        if anchor + index * THIRTY_DAYS != start:
            raise ValueError(f"{start} is not a 30-day period boundary of the anchor {anchor}")
        return period_bounds(anchor, DAYS_30, index)
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
