"""Voice tickets (V1-V5) and SMS tickets (S1-S2)."""

from __future__ import annotations

import pytest

from metering.rules import HELPDESK_TICKETS, SMS_TICKETS, VOICE_TICKETS, evaluate_tickets

from .event_builders import LATER, at, call, final, msg, not_counted, rows, text


def voice(events):
    return rows(evaluate_tickets(events, as_of=at(LATER)), VOICE_TICKETS)


def sms(events):
    return rows(evaluate_tickets(events, as_of=at(LATER)), SMS_TICKETS)


@pytest.mark.parametrize(
    ("direction", "outcome", "expected"),
    [
        ("inbound", "answered", [final(0, "V1")]),
        ("inbound", "voicemail", [final(0, "V1", "V5")]),
        ("outbound", "answered", [final(0, "V1")]),
        ("outbound", "voicemail", [final(0, "V1", "V5")]),
        ("inbound", "forwarded_external", [final(0, "V1")]),
        ("inbound", "missed", not_counted("V1")),
        ("outbound", "missed", not_counted("V1")),
    ],
)
def test_V1_billable_call_outcomes(direction, outcome, expected):
    assert voice([call(0, outcome, direction)]) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([call(0, "ivr_message_only")], not_counted("V2"), id="ivr-message-only"),
        pytest.param([call(0, "forwarded_internal")], not_counted("V2"), id="internal-forward"),
        pytest.param(
            [call(0, "forwarded_internal"), call(0, "answered", seconds=30)],
            [(1, "final", 0 + 30 / 3600, ("V1", "V2", "V3"))],
            id="internal-forward-answered-is-charged-once",
        ),
        pytest.param(
            [call(0, "ivr_message_only"), call(1, "missed")],
            not_counted("V1", "V2"),
            id="ivr-then-missed",
        ),
    ],
)
def test_V2_ivr_message_or_internal_forward_is_not_billable(events, expected):
    assert voice(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [call(0), call(1, direction="outbound"), call(5)],
            [final(0, "V1", "V3")],
            id="three-calls-one-ticket",
        ),
        pytest.param(
            [call(0, "missed"), call(70), call(140), call(210)],
            [final(70, "V1", "V3")],
            id="calls-70h-apart-stay-one-ticket",
        ),
    ],
)
def test_V3_many_calls_count_once(events, expected):
    assert voice(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([call(0), call(72)], [final(0, "V1", "V3")], id="exactly-72h"),
        pytest.param(
            [call(0), call(72, seconds=1)],
            [final(0, "V1"), (2, "final", 72 + 1 / 3600, ("V1", "V4"))],
            id="72h-plus-1s",
        ),
        pytest.param(
            [call(0), call(100, direction="outbound")],
            [final(0, "V1", "V3")],
            id="outbound-call-never-splits",
        ),
        pytest.param(
            [call(0, customer="C1"), call(100, customer="C2")],
            [final(0, "V1", "V3")],
            id="another-customer-never-splits",
        ),
        pytest.param(
            [call(0, customer="C1"), call(100, customer=None)],
            [final(0, "V1"), final(100, "V1", "V4", unit=2)],
            id="unnamed-customer-is-the-requester",
        ),
        pytest.param(
            [call(0), call(50, direction="outbound"), call(110)],
            [final(0, "V1", "V3")],
            id="gap-counts-from-the-last-call",
        ),
        pytest.param(
            [call(0), call(100, "missed")], [final(0, "V1")], id="new-segment-not-billable"
        ),
        pytest.param(
            [call(0, "missed"), call(100)], [final(100, "V1", "V4", unit=2)], id="only-second"
        ),
    ],
)
def test_V4_inbound_call_after_more_than_72h_is_a_new_voice_ticket(events, expected):
    assert voice(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([call(0, "voicemail")], [final(0, "V1", "V5")], id="voicemail-only"),
        pytest.param(
            [call(0, "voicemail"), call(3, direction="outbound")],
            [final(0, "V1", "V3", "V5")],
            id="voicemail-then-call-back",
        ),
    ],
)
def test_V5_voicemail_without_follow_up_still_counts(events, expected):
    assert voice(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([text(0)], [final(0, "S1")], id="agent-sms"),
        pytest.param([text(0, "rule")], [final(0, "S1")], id="rule-sms"),
        pytest.param(
            [text(0, "customer", "inbound")], not_counted("S1"), id="inbound-customer-sms"
        ),
        pytest.param([text(0, "agent", "inbound")], not_counted("S1"), id="inbound-direction"),
        pytest.param([text(0, "ai_agent")], not_counted("S1"), id="ai-agent-sms"),
        pytest.param(
            [text(0, "customer", "inbound"), msg(1, "agent", "sms")],
            [final(1, "S1")],
            id="reply-reported-as-sms-message",
        ),
        pytest.param(
            [msg(1, "agent", "sms", public=False)], not_counted("S1"), id="private-sms-message"
        ),
    ],
)
def test_S1_outbound_sms_from_agent_or_rule_makes_an_sms_ticket(events, expected):
    assert sms(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [text(0, "customer", "inbound"), text(1), text(2, "customer", "inbound"), text(3)],
            [final(1, "S1", "S2")],
            id="conversation",
        ),
        pytest.param([text(0), text(200)], [final(0, "S1", "S2")], id="no-inactivity-split"),
    ],
)
def test_S2_sms_ticket_counts_once(events, expected):
    assert sms(events) == expected


def test_S1_sms_ticket_is_not_a_helpdesk_ticket():
    outcomes = evaluate_tickets([text(0, "customer", "inbound"), text(1)], as_of=at(LATER))
    assert rows(outcomes, HELPDESK_TICKETS) == not_counted("H10")


def test_V1_no_voice_outcome_without_calls():
    outcomes = evaluate_tickets([msg(0), msg(1, "agent")], as_of=at(LATER))
    assert {outcome.meter for outcome in outcomes} == {HELPDESK_TICKETS}
