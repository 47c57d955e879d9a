"""Convert campaign clicks (C1) and the account's hard cap (C2)."""

from __future__ import annotations

import pytest

from metering.rules import (
    BROWSER_SESSION,
    CONVERT_CLICKS,
    apply_hard_cap,
    evaluate_browser_session,
    evaluate_tickets,
)

from .event_builders import LATER, at, click, final, msg, not_counted, rows


def clicks(events, session="B1"):
    return rows(evaluate_browser_session(events, as_of=at(LATER)), CONVERT_CLICKS, session)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([click(0)], [final(0, "C1")], id="one-click"),
        pytest.param(
            [click(0), click(1), click(2)],
            [final(0, "C1"), final(1, "C1", unit=2), final(2, "C1", unit=3)],
            id="three-clicks",
        ),
        pytest.param(
            [click(h) for h in range(5)],
            [
                *not_counted("C1"),
                final(0, "C1"),
                final(1, "C1", unit=2),
                final(2, "C1", unit=3),
            ],
            id="five-clicks-three-billed",
        ),
        pytest.param(
            [click(0, campaign="a"), click(1, campaign="b"), click(2, campaign="c")]
            + [click(3, campaign="d")],
            [
                *not_counted("C1"),
                final(0, "C1"),
                final(1, "C1", unit=2),
                final(2, "C1", unit=3),
            ],
            id="cap-across-campaigns",
        ),
        pytest.param(
            [click(4), click(3), click(0), click(2), click(1)],
            [
                *not_counted("C1"),
                final(0, "C1"),
                final(1, "C1", unit=2),
                final(2, "C1", unit=3),
            ],
            id="the-first-three-in-time",
        ),
        pytest.param([], [], id="no-clicks"),
    ],
)
def test_C1_at_most_three_billable_clicks_per_browser_session(events, expected):
    assert clicks(events) == expected


def test_C1_duplicated_click_counts_once():
    first = click(0)
    assert clicks([first, first, click(1)]) == [final(0, "C1"), final(1, "C1", unit=2)]


def test_C1_sessions_are_evaluated_one_at_a_time():
    with pytest.raises(ValueError, match="one session"):
        evaluate_browser_session([click(0), click(1, session="B2")], as_of=at(LATER))


def test_C1_clicks_are_not_ticket_events():
    assert evaluate_tickets([click(0), msg(1), msg(2, "agent")], as_of=at(LATER))[0].rules == (
        "H1",
    )


def _session_clicks(*spec):
    """Counted outcomes of several browser sessions: (session, hours...) pairs."""
    outcomes = []
    for session, *hours in spec:
        events = [click(h, session=session) for h in hours]
        outcomes += evaluate_browser_session(events, as_of=at(LATER))
    return [outcome for outcome in outcomes if outcome.counted]


@pytest.mark.parametrize(
    ("limit", "billed", "capped"),
    [
        pytest.param(
            3, [("B2", 1, 0), ("B1", 1, 1), ("B2", 2, 2)], [("B1", 2, 5)], id="limit-3-of-4"
        ),
        pytest.param(0, [], [("B2", 1, 0), ("B1", 1, 1), ("B2", 2, 2), ("B1", 2, 5)], id="limit-0"),
        pytest.param(
            10, [("B2", 1, 0), ("B1", 1, 1), ("B2", 2, 2), ("B1", 2, 5)], [], id="under-the-cap"
        ),
    ],
)
def test_C2_clicks_beyond_the_plan_limit_are_recorded_not_billed(limit, billed, capped):
    outcomes = _session_clicks(("B1", 1, 5), ("B2", 0, 2))
    kept, over = apply_hard_cap(reversed(outcomes), limit=limit, rule="C2")

    def key(o):
        return (o.subject, o.unit, (o.billable_at - at(0)).total_seconds() / 3600)

    assert [key(o) for o in kept] == billed
    assert [key(o) for o in over] == capped
    assert all(o.status == "final" and o.rules == ("C1",) for o in kept)
    assert all(o.status == "not_counted" and o.rules == ("C1", "C2") for o in over)
    assert all(o.billable_at is not None and o.subject_kind == BROWSER_SESSION for o in over)


@pytest.mark.parametrize(
    ("limit", "rule", "message"),
    [(-1, "C2", "number of units"), (1, "X9", "unknown rule")],
)
def test_C2_bad_cap_arguments_are_refused(limit, rule, message):
    with pytest.raises(ValueError, match=message):
        apply_hard_cap(_session_clicks(("B1", 0)), limit=limit, rule=rule)


def test_C2_only_counted_outcomes_can_be_capped():
    verdicts = evaluate_browser_session([click(h) for h in range(4)], as_of=at(LATER))
    with pytest.raises(ValueError, match="only counted"):
        apply_hard_cap(verdicts, limit=1, rule="C2")
