"""Automated interactions, rules A1-A5 (and how they meet the helpdesk meter, A4)."""

from __future__ import annotations

import pytest

from metering.rules import AUTOMATED_INTERACTIONS, HELPDESK_TICKETS, evaluate_tickets

from .event_builders import (
    LATER,
    at,
    auto,
    call,
    final,
    fwd,
    msg,
    not_counted,
    note,
    pending,
    portal,
    rows,
    text,
)

AI = AUTOMATED_INTERACTIONS


def automated(events, as_of=LATER):
    return rows(evaluate_tickets(events, as_of=at(as_of)), AI)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([msg(0), auto(0.1, "flow")], [final(0.1, "A1", "A5")], id="flow"),
        pytest.param(
            [portal(0, "track_order"), auto(0, "order_management")],
            [final(0, "A1", "A5")],
            id="order-management",
        ),
        pytest.param(
            [msg(0), auto(1, "article_recommendation")],
            [final(1, "A1", "A5")],
            id="article-recommendation",
        ),
        pytest.param(
            [msg(0), auto(0.1, "ai_agent"), msg(0.1, "ai_agent")],
            [final(0.1, "A1", "A5")],
            id="ai-agent-answer",
        ),
        pytest.param(
            [msg(0), auto(1), msg(30, channel="chat")], not_counted("A1"), id="follow-up-question"
        ),
        pytest.param(
            [msg(0), auto(1), msg(73, channel="chat")],
            not_counted("A1"),
            id="follow-up-at-exactly-72h",
        ),
        pytest.param(
            [msg(0), auto(1), msg(73, channel="chat", seconds=1)],
            [final(1, "A1", "A5")],
            id="follow-up-after-72h",
        ),
        pytest.param([msg(0), auto(1), call(5)], not_counted("A1"), id="answered-call"),
        pytest.param(
            [msg(0), auto(1), call(5, "missed")], [final(1, "A1", "A5")], id="missed-call"
        ),
        pytest.param([msg(0), auto(1), text(5)], not_counted("A1"), id="agent-sms"),
        pytest.param(
            [portal(0, "track_order"), auto(0, "order_management")]
            + [portal(2, "start_conversation")],
            not_counted("A1"),
            id="asked-for-an-agent",
        ),
        pytest.param(
            [msg(0), auto(1), msg(2, "agent", "facebook_comment")],
            not_counted("A1"),
            id="agent-on-a-comment",
        ),
        pytest.param(
            [msg(0), msg(1), auto(1)],
            [final(1, "A1", "A5")],
            id="customer-message-at-the-same-instant-is-the-request",
        ),
        pytest.param(
            [msg(0), msg(0.5), auto(1)],
            [final(1, "A1", "A5")],
            id="customer-message-before-is-the-request",
        ),
        pytest.param(
            [msg(0), auto(1), msg(30), auto(80)],
            [final(80, "A1", "A5")],
            id="a-later-resolution-stands",
        ),
        pytest.param(
            [msg(0), auto(1), auto(2, "article_recommendation")],
            [final(1, "A1", "A5")],
            id="one-per-ticket",
        ),
    ],
)
def test_A1_request_resolved_without_an_agent_within_72h(events, expected):
    assert automated(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0), auto(1, "ai_agent"), msg(3, requires_resolution=False)],
            [final(1, "A1", "A2", "A5")],
            id="thanks",
        ),
        pytest.param(
            [msg(0), auto(1, "ai_agent"), msg(3, requires_resolution=True)],
            not_counted("A1"),
            id="real-follow-up",
        ),
        pytest.param(
            [msg(0), auto(1), msg(3, requires_resolution=False), msg(4)],
            not_counted("A1"),
            id="thanks-then-question",
        ),
    ],
)
def test_A2_a_reply_that_needs_no_resolution_does_not_cancel(events, expected):
    assert automated(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([msg(0), auto(1, "ai_agent", "handover")], not_counted("A3"), id="handover"),
        pytest.param([msg(0), auto(1, "ai_agent", "spam")], not_counted("A3"), id="spam-close"),
        pytest.param(
            [msg(0), auto(1, "flow"), auto(2, "ai_agent", "handover")],
            not_counted("A1", "A3"),
            id="resolved-then-handed-over",
        ),
        pytest.param(
            [msg(0), auto(1, "ai_agent", "handover"), msg(2, "agent")],
            not_counted("A3"),
            id="handover-then-agent",
        ),
    ],
)
def test_A3_ai_handover_or_spam_close_is_not_counted(events, expected):
    assert automated(events) == expected


def test_A3_handover_then_agent_bills_the_helpdesk_ticket():
    outcomes = evaluate_tickets(
        [msg(0), auto(1, "ai_agent", "handover"), msg(2, "agent")], as_of=at(LATER)
    )
    assert rows(outcomes, HELPDESK_TICKETS) == [final(2, "H1")]


@pytest.mark.parametrize(
    ("response", "expected_ai", "expected_helpdesk"),
    [
        pytest.param(
            msg(10, "agent"),
            not_counted("A1", "A4"),
            [final(10, "H1")],
            id="agent-within-72h",
        ),
        pytest.param(
            msg(2, "rule"),
            not_counted("A1", "A4"),
            [final(2, "H1")],
            id="rule-within-72h",
        ),
        pytest.param(
            msg(73, "agent"),
            not_counted("A1", "A4"),
            [final(73, "H1")],
            id="exactly-72h",
        ),
        pytest.param(
            msg(73, "agent", seconds=1),
            [final(1, "A1", "A4", "A5")],
            [(1, "final", 73 + 1 / 3600, ("H1",))],
            id="72h-plus-1s",
        ),
    ],
)
def test_A4_automation_then_response_bills_one_or_both(response, expected_ai, expected_helpdesk):
    outcomes = evaluate_tickets([msg(0), auto(1), response], as_of=at(LATER))
    assert rows(outcomes, AI) == expected_ai
    assert rows(outcomes, HELPDESK_TICKETS) == expected_helpdesk


# The automation resolves at 100 h; the customer wrote at 0 h, long enough before for every
# response of the table to fit between the two.
RESOLVED_AT = 100


@pytest.mark.parametrize(
    ("response", "expected_ai", "expected_helpdesk"),
    [
        pytest.param(
            msg(RESOLVED_AT, "rule", seconds=-5),
            not_counted("A1", "A4"),
            [final(RESOLVED_AT - 5 / 3600, "H1")],
            id="rule-auto-ack-5s-before",
        ),
        pytest.param(
            msg(RESOLVED_AT - 71, "agent"),
            not_counted("A1", "A4"),
            [final(RESOLVED_AT - 71, "H1")],
            id="agent-71h-before",
        ),
        pytest.param(
            msg(RESOLVED_AT - 72, "rule"),
            not_counted("A1", "A4"),
            [final(RESOLVED_AT - 72, "H1")],
            id="exactly-72h-before",  # decision: the mirror of "exactly 72 h after"
        ),
        pytest.param(
            msg(RESOLVED_AT - 72, "rule", seconds=-1),
            [final(RESOLVED_AT, "A1", "A4", "A5")],
            [final(RESOLVED_AT - 72 - 1 / 3600, "H1")],
            id="72h-plus-1s-before",
        ),
        pytest.param(
            msg(RESOLVED_AT - 73, "agent"),
            [final(RESOLVED_AT, "A1", "A4", "A5")],
            [final(RESOLVED_AT - 73, "H1")],
            id="agent-73h-before",
        ),
        pytest.param(
            msg(RESOLVED_AT, "rule"),
            not_counted("A1", "A4"),
            [final(RESOLVED_AT, "H1")],
            id="same-instant",  # decision: 0 s apart is within 72 h
        ),
        pytest.param(
            fwd(RESOLVED_AT - 1),
            not_counted("A1", "A4"),
            [final(RESOLVED_AT - 1, "H4")],
            id="forward-before",
        ),
        pytest.param(
            msg(RESOLVED_AT - 1, "agent", public=False),
            [final(RESOLVED_AT, "A1", "A5")],
            not_counted("H9"),
            id="private-message-before-is-no-response",
        ),
        pytest.param(
            note(RESOLVED_AT - 1),
            [final(RESOLVED_AT, "A1", "A5")],
            not_counted("H9"),
            id="internal-note-before-is-no-response",
        ),
    ],
)
def test_A4_response_then_automation_bills_one_or_both(response, expected_ai, expected_helpdesk):
    outcomes = evaluate_tickets([msg(0), response, auto(RESOLVED_AT)], as_of=at(LATER))
    assert rows(outcomes, AI) == expected_ai
    assert rows(outcomes, HELPDESK_TICKETS) == expected_helpdesk


def test_A4_rule_reply_before_automation_cancels_it():
    # The tester's ticket (issue 20): a rule's auto-ack 5 s before the flow resolves.
    events = [msg(0), msg(0, "rule", seconds=5), auto(0, seconds=10)]
    outcomes = evaluate_tickets(events, as_of=at(LATER))
    assert rows(outcomes, AI) == not_counted("A1", "A4")
    assert rows(outcomes, HELPDESK_TICKETS) == [final(5 / 3600, "H1")]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0), msg(1, "agent"), auto(2), msg(3)],
            not_counted("A1", "A4"),
            id="before-and-customer-after",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), auto(2), auto(80)],
            [final(80, "A1", "A4", "A5")],
            id="a-later-resolution-more-than-72h-after-the-response-stands",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), auto(2), auto(73)],
            not_counted("A1", "A4"),
            id="a-later-resolution-within-72h-of-the-response-is-cancelled-too",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), auto(2, "ai_agent", "handover")],
            not_counted("A3"),
            id="a-handover-is-never-a-candidate",
        ),
    ],
)
def test_A4_a_response_before_meets_the_other_rules(events, expected):
    assert automated(events) == expected


@pytest.mark.parametrize(
    ("events", "as_of", "expected"),
    [
        pytest.param([msg(0), auto(1)], 1, [pending(1, "A1", "A5")], id="at-once"),
        pytest.param([msg(0), auto(1)], 72.99, [pending(1, "A1", "A5")], id="just-before-end"),
        pytest.param([msg(0), auto(1)], 73, [final(1, "A1", "A5")], id="window-end"),
        pytest.param([msg(0), auto(1)], 500, [final(1, "A1", "A5")], id="long-after"),
        pytest.param(
            [msg(0), auto(1), msg(40, "agent")], 20, not_counted("A1", "A4"), id="cancelled"
        ),
        pytest.param(
            [msg(0), auto(1), msg(2, requires_resolution=False)],
            10,
            [pending(1, "A1", "A2", "A5")],
            id="thanks-keeps-it-pending",
        ),
        pytest.param(
            [msg(0), msg(0.5, "rule"), auto(1)],
            1,
            not_counted("A1", "A4"),
            id="a-response-before-cancels-at-once",
        ),
    ],
)
def test_A5_pending_until_the_window_closes_then_final(events, as_of, expected):
    assert automated(events, as_of) == expected


def test_A5_pending_until_is_the_window_end_and_billable_at_stays():
    events = [msg(0), auto(1)]
    before = evaluate_tickets(events, as_of=at(10))
    after = evaluate_tickets(events, as_of=at(73))
    (was,) = [o for o in before if o.meter == AI]
    (now,) = [o for o in after if o.meter == AI]
    assert (was.status, was.pending_until, was.billable_at) == ("pending", at(73), at(1))
    assert (now.status, now.pending_until, now.billable_at) == ("final", None, at(1))


def test_A5_no_automation_outcome_without_automation_events():
    outcomes = evaluate_tickets([msg(0), msg(1, "agent")], as_of=at(LATER))
    assert [o.meter for o in outcomes] == [HELPDESK_TICKETS]
