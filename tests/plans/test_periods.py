"""Period arithmetic: month ends, leap years, half-open periods (plans/periods.py)."""

from datetime import UTC, datetime

import pytest

from plans import periods


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        (utc(2026, 1, 31, 9, 30), 1, utc(2026, 2, 28, 9, 30)),  # short month: last day
        (utc(2026, 1, 31, 9, 30), 2, utc(2026, 3, 31, 9, 30)),  # and back to the 31st
        (utc(2028, 1, 31), 1, utc(2028, 2, 29)),  # leap year
        (utc(2026, 1, 31), 3, utc(2026, 4, 30)),
        (utc(2028, 2, 29), 12, utc(2029, 2, 28)),  # leap day anchor, common year
        (utc(2028, 2, 29), 48, utc(2032, 2, 29)),  # ... and the next leap year
        (utc(2026, 12, 15), 1, utc(2027, 1, 15)),  # year boundary
        (utc(2026, 3, 31), -1, utc(2026, 2, 28)),
    ],
)
def test_add_months_clamps_to_month_end_and_returns_to_anchor_day(anchor, months, expected):
    assert periods.add_months(anchor, months) == expected


def test_a_year_of_monthly_periods_anchored_on_jan_31():
    anchor = utc(2026, 1, 31)
    starts = [periods.period_bounds(anchor, "month", i)[0].date().isoformat() for i in range(13)]
    assert starts == [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
        "2026-11-30",
        "2026-12-31",
        "2027-01-31",
    ]


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (utc(2026, 2, 27, 23, 59, 59), (utc(2026, 1, 31), utc(2026, 2, 28))),
        (utc(2026, 2, 28), (utc(2026, 2, 28), utc(2026, 3, 31))),  # start is inside [start, end)
        (utc(2026, 3, 30, 23, 59, 59), (utc(2026, 2, 28), utc(2026, 3, 31))),
        (utc(2026, 3, 31), (utc(2026, 3, 31), utc(2026, 4, 30))),
        (utc(2026, 1, 15), (utc(2025, 12, 31), utc(2026, 1, 31))),  # before the anchor
    ],
)
def test_period_containing_is_half_open(instant, expected):
    assert periods.period_containing(utc(2026, 1, 31), "month", instant) == expected


def test_annual_periods_keep_leap_day_anchor():
    anchor = utc(2028, 2, 29, 12)
    assert periods.period_containing(anchor, "year", utc(2029, 6, 1)) == (
        utc(2029, 2, 28, 12),
        utc(2030, 2, 28, 12),
    )
    assert periods.period_bounds(anchor, "year", 4) == (utc(2032, 2, 29, 12), utc(2033, 2, 28, 12))


def test_usage_periods_are_monthly_on_annual_subscriptions():
    assert periods.usage_period_containing(utc(2026, 1, 31), utc(2026, 6, 5)) == (
        utc(2026, 5, 31),
        utc(2026, 6, 30),
    )


def test_remaining_seconds_for_proration():
    start, end = utc(2026, 11, 1), utc(2026, 12, 1)
    assert periods.remaining_seconds(start, end, utc(2026, 11, 16)) == (15 * 86400, 30 * 86400)
    assert periods.remaining_seconds(start, end, utc(2026, 12, 5)) == (0, 30 * 86400)


# --- showing a period (format_period: pages, emails, console, invoice lines, PDFs) -----------

# The invoice line's words where they differ from the days: a whole calendar month by its name.
SAME = None


@pytest.mark.parametrize(
    ("start", "end", "shown", "on_a_line"),
    [
        # A calendar month: the last day covered, never the exclusive end boundary.
        ("2027-03-01T00:00Z", "2027-04-01T00:00Z", "Mar 1 – Mar 31, 2027", "March 2027"),
        ("2028-02-01T00:00Z", "2028-03-01T00:00Z", "Feb 1 – Feb 29, 2028", "February 2028"),
        ("2026-11-21T00:00Z", "2026-12-21T00:00Z", "Nov 21 – Dec 20, 2026", SAME),
        # February's end: a cycle anchored on the 28th.
        ("2027-02-28T00:00Z", "2027-03-28T00:00Z", "Feb 28 – Mar 27, 2027", SAME),
        # Across a year end: the year on both sides.
        ("2026-12-21T00:00Z", "2027-01-21T00:00Z", "Dec 21, 2026 – Jan 20, 2027", SAME),
        ("2026-12-01T00:00Z", "2027-01-01T00:00Z", "Dec 1 – Dec 31, 2026", "December 2026"),
        ("2026-01-01T00:00Z", "2027-01-01T00:00Z", "Jan 1 – Dec 31, 2026", SAME),  # a year
        # A one-day period is that day.
        ("2026-11-21T00:00Z", "2026-11-22T00:00Z", "Nov 21, 2026", SAME),
        # Ending at midnight of the 1st: the month's last day, not the 1st.
        ("2026-11-21T00:00Z", "2026-12-01T00:00Z", "Nov 21 – Nov 30, 2026", SAME),
        ("2026-10-01T00:00Z", "2026-10-16T00:00Z", "Oct 1 – Oct 15, 2026", SAME),
        # An anchor with a time of day: the end's own day is still covered.
        ("2026-11-21T14:30Z", "2026-12-21T14:30Z", "Nov 21 – Dec 21, 2026", SAME),
        ("2026-10-01T09:00Z", "2026-11-01T09:00Z", "Oct 1 – Nov 1, 2026", SAME),
        # Another zone's instants are written in UTC: not a calendar month there.
        ("2026-11-21T01:00+02:00", "2026-12-21T01:00+02:00", "Nov 20 – Dec 20, 2026", SAME),
        ("2026-10-01T00:00+02:00", "2026-11-01T00:00+01:00", "Sep 30 – Oct 31, 2026", SAME),
    ],
)
def test_a_period_is_written_as_the_days_it_covers(start, end, shown, on_a_line):
    start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
    assert periods.format_period(start, end) == shown
    assert periods.format_period(start, end, month_by_name=True) == (on_a_line or shown)


def test_a_naive_instant_is_refused_rather_than_read_in_the_servers_zone():
    with pytest.raises(ValueError, match="timezone-aware"):
        periods.format_period(datetime(2026, 11, 1), utc(2026, 12, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        periods.format_day(datetime(2026, 11, 1))


def test_a_day_is_written_with_our_own_month_names():
    assert periods.format_day(utc(2026, 9, 5, 23, 59)) == "Sep 5, 2026"
    assert periods.format_day(utc(2026, 6, 30), year=False) == "Jun 30"
