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
