"""The one backoff helper (retries/): fixed tables, exponential waits, the cap, jitter bounds."""

from datetime import timedelta
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retries import Exponential, FiniteTable, Table

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("n", "wait"),
    [(1, 5 * MINUTE), (2, 30 * MINUTE), (3, 2 * HOUR), (4, 12 * HOUR), (5, 12 * HOUR)],
)
def test_a_table_gives_one_wait_per_try_then_repeats_its_last(n, wait):
    table = Table((5 * MINUTE, 30 * MINUTE, 2 * HOUR, 12 * HOUR))
    assert table.wait(n) == wait
    assert table.wait(10_000) == 12 * HOUR


def test_a_finite_table_ends_with_no_more_tries():
    days = FiniteTable(tuple(d * DAY for d in (1, 2, 4, 6, 8, 11, 14)))
    assert [days.wait(n) for n in range(1, 9)] == [
        DAY,
        2 * DAY,
        4 * DAY,
        6 * DAY,
        8 * DAY,
        11 * DAY,
        14 * DAY,
        None,
    ]
    assert list(days.waits_from(6)) == [11 * DAY, 14 * DAY]
    assert list(days.waits_from(8)) == []


@pytest.mark.parametrize(
    ("n", "wait"),
    [(1, MINUTE), (2, 2 * MINUTE), (3, 4 * MINUTE), (9, 256 * MINUTE), (10, 6 * HOUR)],
)
def test_exponential_doubles_from_the_first_wait_up_to_the_cap(n, wait):
    assert Exponential(first=MINUTE, cap=6 * HOUR).wait(n) == wait


def test_exponential_stays_at_the_cap_however_many_failures():
    # 2 ** 10_000 minutes would overflow timedelta: the doubling stops at the cap.
    assert Exponential(first=MINUTE, cap=6 * HOUR).wait(10_000) == 6 * HOUR
    assert Exponential(first=MINUTE, cap=MINUTE).wait(3) == MINUTE


@given(n=st.integers(1, 50), percent=st.integers(0, 100), seed=st.integers(0, 2**32))
def test_a_jittered_wait_lies_between_its_share_below_the_plain_wait_and_the_plain_wait(
    n, percent, seed
):
    plain = Exponential(first=MINUTE, cap=6 * HOUR).wait(n)
    jittered = Exponential(first=MINUTE, cap=6 * HOUR, jitter_percent=percent)
    wait = jittered.wait(n, rng=Random(seed))
    assert plain * (100 - percent) / 100 <= wait <= plain <= 6 * HOUR


def test_jitter_spreads_the_waits_of_rows_that_failed_together():
    jittered = Exponential(first=MINUTE, cap=6 * HOUR, jitter_percent=50)
    rng = Random(7)
    waits = {jittered.wait(4, rng=rng) for _ in range(100)}
    assert len(waits) > 90
    assert min(waits) < 5 * MINUTE and max(waits) > 7 * MINUTE  # across [4, 8] minutes
    # Without a generator of the caller's, one of the module's is used: still within bounds.
    assert 4 * MINUTE <= jittered.wait(4) <= 8 * MINUTE


@pytest.mark.parametrize("n", [0, -1])
def test_tries_count_from_one(n):
    for schedule in (Table((MINUTE,)), FiniteTable((MINUTE,)), Exponential(first=MINUTE, cap=HOUR)):
        with pytest.raises(ValueError, match="counted from 1"):
            schedule.wait(n)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Table(()), "at least one wait"),
        (lambda: FiniteTable((MINUTE, timedelta(0))), "longer than zero"),
        (lambda: Exponential(first=timedelta(0), cap=HOUR), "longer than zero"),
        (lambda: Exponential(first=HOUR, cap=MINUTE), "shorter than the first"),
        (lambda: Exponential(first=MINUTE, cap=HOUR, jitter_percent=101), "0 to 100"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_when_written(build, message):
    with pytest.raises(ValueError, match=message):
        build()
