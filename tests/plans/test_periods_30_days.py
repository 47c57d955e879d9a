"""The 30-day interval of Shopify-channel subscriptions (plans/periods.py, `30d`): periods are
exactly 30 days from the anchor, whatever the calendar does, and they are the usage periods too."""

from datetime import UTC, datetime, timedelta

import pytest

from plans import periods


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Anchored on Jan 30, 2027 at 09:15: February is skipped by the grid (Jan 30 -> Mar 1).
JAN_30 = utc(2027, 1, 30, 9, 15)


@pytest.mark.parametrize(
    ("anchor", "index", "expected"),
    [
        (JAN_30, 0, (utc(2027, 1, 30, 9, 15), utc(2027, 3, 1, 9, 15))),
        (JAN_30, 1, (utc(2027, 3, 1, 9, 15), utc(2027, 3, 31, 9, 15))),
        (JAN_30, 2, (utc(2027, 3, 31, 9, 15), utc(2027, 4, 30, 9, 15))),
        (JAN_30, -1, (utc(2026, 12, 31, 9, 15), utc(2027, 1, 30, 9, 15))),
        # A leap year's February has 29 days: Jan 31 -> Mar 1, not Mar 2.
        (utc(2028, 1, 31), 0, (utc(2028, 1, 31), utc(2028, 3, 1))),
        (utc(2028, 2, 29, 23, 59), 0, (utc(2028, 2, 29, 23, 59), utc(2028, 3, 30, 23, 59))),
        # Across a year end, time of day kept to the microsecond.
        (
            utc(2026, 12, 15, 0, 0, 0, 1),
            0,
            (utc(2026, 12, 15, 0, 0, 0, 1), utc(2027, 1, 14, 0, 0, 0, 1)),
        ),
        # Twelve periods are 360 days: the grid drifts against the calendar, as Shopify's does.
        (utc(2027, 1, 1), 12, (utc(2027, 12, 27), utc(2028, 1, 26))),
    ],
)
def test_period_bounds_are_30_days_from_the_anchor(anchor, index, expected):
    assert periods.period_bounds(anchor, periods.DAYS_30, index) == expected


@pytest.mark.parametrize(
    ("instant", "index", "period"),
    [
        (JAN_30, 0, (JAN_30, utc(2027, 3, 1, 9, 15))),  # the anchor opens period 0
        (utc(2027, 2, 28, 23, 59, 59), 0, (JAN_30, utc(2027, 3, 1, 9, 15))),
        (utc(2027, 3, 1, 9, 14, 59, 999999), 0, (JAN_30, utc(2027, 3, 1, 9, 15))),
        (utc(2027, 3, 1, 9, 15), 1, (utc(2027, 3, 1, 9, 15), utc(2027, 3, 31, 9, 15))),  # half-open
        (utc(2027, 4, 30, 9, 15), 3, (utc(2027, 4, 30, 9, 15), utc(2027, 5, 30, 9, 15))),
        (utc(2027, 1, 30, 9, 14), -1, (utc(2026, 12, 31, 9, 15), JAN_30)),  # before the anchor
        (utc(2026, 12, 1, 9, 15), -2, (utc(2026, 12, 1, 9, 15), utc(2026, 12, 31, 9, 15))),
    ],
)
def test_the_period_containing_an_instant(instant, index, period):
    assert periods.period_index(JAN_30, periods.DAYS_30, instant) == index
    assert periods.period_containing(JAN_30, periods.DAYS_30, instant) == period


@pytest.mark.parametrize(
    ("interval", "instant", "expected"),
    [
        # 30d: the usage period is the 30-day period itself.
        (periods.DAYS_30, utc(2027, 3, 15), (utc(2027, 3, 1, 9, 15), utc(2027, 3, 31, 9, 15))),
        (periods.DAYS_30, utc(2027, 2, 28), (JAN_30, utc(2027, 3, 1, 9, 15))),
        # month and year keep monthly usage periods from the same anchor (rule book §1),
        # clamped to February's end.
        (periods.MONTH, utc(2027, 3, 15), (utc(2027, 2, 28, 9, 15), utc(2027, 3, 30, 9, 15))),
        (periods.YEAR, utc(2027, 3, 15), (utc(2027, 2, 28, 9, 15), utc(2027, 3, 30, 9, 15))),
    ],
)
def test_usage_periods_follow_the_cycle_only_on_30_days(interval, instant, expected):
    assert periods.usage_period_containing(JAN_30, instant, interval) == expected


def test_usage_periods_default_to_monthly():
    """Callers that pass no interval keep the monthly usage periods they always had."""
    instant = utc(2027, 3, 15)
    assert periods.usage_period_containing(JAN_30, instant) == periods.usage_period_containing(
        JAN_30, instant, periods.MONTH
    )


def test_a_year_of_30_day_periods_tiles_time_without_gaps():
    anchor = utc(2028, 1, 30, 17, 45, 12)
    bounds = [periods.period_bounds(anchor, periods.DAYS_30, i) for i in range(-3, 14)]
    for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False):
        assert end == start
    for start, end in bounds:
        assert end - start == timedelta(days=30)
        assert start.time() == anchor.time()
        assert periods.period_containing(anchor, periods.DAYS_30, start) == (start, end)
        assert periods.period_containing(
            anchor, periods.DAYS_30, end - timedelta(microseconds=1)
        ) == (
            start,
            end,
        )


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (JAN_30, (JAN_30, utc(2027, 3, 1, 9, 15))),
        (utc(2027, 3, 31, 9, 15), (utc(2027, 3, 31, 9, 15), utc(2027, 4, 30, 9, 15))),
    ],
)
def test_a_30_day_cycle_starts_on_its_own_grid(start, expected):
    assert periods.cycle_starting(JAN_30, start, periods.DAYS_30) == expected


@pytest.mark.parametrize(
    "start",
    [
        utc(2027, 2, 28, 9, 15),  # the monthly grid's point, not the 30-day grid's
        utc(2027, 3, 1, 9, 16),  # a minute off
    ],
)
def test_a_30_day_cycle_refuses_a_start_off_its_grid(start):
    with pytest.raises(ValueError, match="30-day period boundary"):
        periods.cycle_starting(JAN_30, start, periods.DAYS_30)


def test_month_and_year_cycles_are_unchanged():
    """The monthly grid is not the 30-day one: month and year cycles still clamp to month ends."""
    anchor = utc(2027, 1, 31)
    assert periods.period_bounds(anchor, periods.MONTH, 1) == (utc(2027, 2, 28), utc(2027, 3, 31))
    assert periods.cycle_starting(anchor, utc(2027, 2, 28), periods.YEAR) == (
        utc(2027, 2, 28),
        utc(2028, 2, 29),  # 13 months from the anchor, clamped to the leap February's end
    )


@pytest.mark.parametrize(
    ("interval", "prices", "usage"),
    [
        (periods.DAYS_30, periods.MONTH, periods.DAYS_30),
        (periods.MONTH, periods.MONTH, periods.MONTH),
        (periods.YEAR, periods.YEAR, periods.MONTH),
    ],
)
def test_which_prices_and_usage_periods_an_interval_has(interval, prices, usage):
    """A 30-day cycle pays the monthly catalog prices per period and never an annual one."""
    assert periods.price_interval(interval) == prices
    assert periods.usage_interval(interval) == usage


def test_a_30_day_period_is_shown_as_its_days():
    start, end = periods.period_bounds(JAN_30, periods.DAYS_30, 0)
    assert periods.format_period(start, end) == "Jan 30 \u2013 Mar 1, 2027"
    start, end = periods.period_bounds(utc(2027, 12, 1), periods.DAYS_30, 0)
    assert periods.format_period(start, end, month_by_name=True) == "Dec 1 \u2013 Dec 30, 2027"
