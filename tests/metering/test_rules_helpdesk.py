"""Helpdesk tickets, rules H1-H11: one table per rule, rows are (events, expected rows)."""

from __future__ import annotations

from datetime import datetime

import pytest

from metering.rules import (
    AUTOMATED_INTERACTIONS,
    HELPDESK_TICKETS,
    RULE_IDS,
    SMS_TICKETS,
    VOICE_TICKETS,
    Event,
    evaluate_tickets,
)

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
    portal,
    rows,
    text,
    updated,
)


def helpdesk(events, as_of=LATER):
    return rows(evaluate_tickets(events, as_of=at(as_of)), HELPDESK_TICKETS)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([msg(0), msg(1, "agent")], [final(1, "H1")], id="agent-email-reply"),
        pytest.param([msg(0), msg(0.5, "rule")], [final(0.5, "H1")], id="rule-auto-reply"),
        pytest.param(
            [msg(0, channel="chat"), msg(1, "agent", "chat")], [final(1, "H1")], id="chat"
        ),
        pytest.param(
            [msg(0, channel="contact_form"), msg(1, "agent", "contact_form")],
            [final(1, "H1")],
            id="contact-form",
        ),
        pytest.param([msg(0, channel="api"), msg(2, "agent", "api")], [final(2, "H1")], id="api"),
        pytest.param(
            [msg(0, channel="facebook_messenger"), msg(1, "agent", "facebook_messenger")],
            [final(1, "H1")],
            id="messenger-dm",
        ),
        pytest.param(
            [msg(0, channel="whatsapp"), msg(3, "rule", "whatsapp")],
            [final(3, "H1")],
            id="whatsapp",
        ),
        pytest.param([msg(0, "agent")], [final(0, "H1")], id="outbound-first-email"),
        pytest.param(
            [msg(0), msg(1, "agent", public=False)], not_counted("H9"), id="private-agent-message"
        ),
        pytest.param([msg(0)], not_counted("H9"), id="customer-only"),
    ],
)
def test_H1_public_agent_or_rule_message_makes_ticket_billable(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0), msg(0.1, "rule"), msg(5, "agent"), msg(6), msg(7, "agent")],
            [final(0.1, "H1", "H2")],
            id="first-response-decides-billable-at",
        ),
        pytest.param(
            [msg(h, "agent" if h % 2 else "customer") for h in range(12)],
            [final(1, "H1", "H2")],
            id="twelve-messages-both-ways",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), fwd(2)], [final(1, "H1", "H2")], id="reply-then-forward"
        ),
    ],
)
def test_H2_billable_ticket_counts_once(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0), updated(0, spam=True), msg(0.1, "rule")],
            [final(0.1, "H1", "H3")],
            id="auto-reply-on-flagged-spam",
        ),
        pytest.param(
            [msg(0), msg(0.1, "rule"), updated(2, spam=True)],
            [final(0.1, "H1", "H3")],
            id="flagged-after-the-auto-reply",
        ),
        pytest.param(
            [msg(0), msg(0.1, "rule"), updated(2, spam=False)],
            [final(0.1, "H1")],
            id="spam-false-is-no-flag",
        ),
        pytest.param([msg(0), updated(0, spam=True)], not_counted("H9"), id="spam-without-reply"),
    ],
)
def test_H3_rule_auto_reply_counts_even_on_spam(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([msg(0), fwd(2)], [final(2, "H4")], id="agent-forward"),
        pytest.param([msg(0), fwd(2, None)], [final(2, "H4")], id="forward-without-author"),
        pytest.param([msg(0), fwd(2, "rule")], [final(2, "H4")], id="rule-forward"),
        pytest.param([msg(0), fwd(2, "ai_agent")], not_counted("H11"), id="ai-forward"),
        pytest.param(
            [msg(0), fwd(2), msg(3, "agent")], [final(2, "H2", "H4")], id="forward-then-reply"
        ),
    ],
)
def test_H4_forwarding_out_of_the_helpdesk_is_a_response(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0, channel="facebook_comment"), msg(1, "agent", "facebook_comment")],
            not_counted("H5"),
            id="facebook-comment-reply",
        ),
        pytest.param(
            [msg(0, channel="instagram_comment"), msg(1, "agent", "instagram_comment")],
            not_counted("H5"),
            id="instagram-comment-reply",
        ),
        pytest.param(
            [msg(0, channel="instagram_comment"), msg(1, "rule", "instagram_comment")],
            not_counted("H5"),
            id="rule-reply-to-comment",
        ),
        pytest.param(
            [msg(0, channel="instagram_dm"), msg(1, "agent", "instagram_dm")],
            [final(1, "H1")],
            id="direct-message-is-billable",
        ),
        pytest.param(
            [
                msg(0, channel="facebook_comment"),
                msg(1, "agent", "facebook_comment"),
                msg(2, "agent", "facebook_messenger"),
            ],
            [final(2, "H1")],
            id="comment-then-dm",
        ),
    ],
)
def test_H5_reply_to_a_social_comment_is_not_billable(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0, channel="chat"), msg(1, "agent", "chat"), msg(73, channel="chat")],
            [final(1, "H1")],
            id="exactly-72h-same-ticket",
        ),
        pytest.param(
            [
                msg(0, channel="chat"),
                msg(1, "agent", "chat"),
                msg(73, channel="chat"),
                msg(74, "agent", "chat"),
            ],
            [final(1, "H1", "H2")],
            id="exactly-72h-reply-is-the-same-ticket",
        ),
        pytest.param(
            [
                msg(0, channel="chat"),
                msg(1, "agent", "chat"),
                msg(73, channel="chat", seconds=1),
                msg(74, "agent", "chat"),
            ],
            [final(1, "H1"), final(74, "H1", "H6", unit=2)],
            id="72h-plus-1s-opens-a-new-ticket",
        ),
        pytest.param(
            [msg(0, channel="chat"), msg(1, "agent", "chat"), msg(100, channel="chat")],
            [final(1, "H1")],
            id="new-segment-without-reply-is-not-billed",
        ),
        pytest.param(
            [msg(0, channel="chat"), msg(100, channel="chat"), msg(101, "agent", "chat")],
            [final(101, "H1", "H6", unit=2)],
            id="first-segment-unanswered",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), msg(100), msg(101, "agent")],
            [final(1, "H1", "H2")],
            id="email-never-splits",
        ),
        pytest.param(
            [msg(0, channel="chat"), msg(1, "agent", "chat"), note(50), msg(100, channel="chat")]
            + [msg(101, "agent", "chat")],
            [final(1, "H1", "H2")],
            id="internal-note-is-activity",
        ),
        pytest.param(
            [msg(0, channel="chat"), msg(1, "agent", "chat"), updated(50, tags=["vip"])]
            + [msg(100, channel="chat"), msg(101, "agent", "chat")],
            [final(1, "H1"), final(101, "H1", "H6", unit=2)],
            id="tag-change-is-not-activity",
        ),
        pytest.param(
            [
                msg(0, channel="chat"),
                msg(1, "agent", "chat"),
                msg(100, channel="chat", via_campaign=True),
            ],
            [final(1, "H1"), final(100, "H6", "H7", unit=2)],
            id="campaign-message-after-inactivity",
        ),
    ],
)
def test_H6_chat_after_more_than_72h_inactivity_is_a_new_ticket(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0, channel="chat", via_campaign=True)],
            [final(0, "H7")],
            id="campaign-message-no-reply",
        ),
        pytest.param(
            [msg(0, channel="chat", via_campaign=True), msg(2, "agent", "chat")],
            [final(0, "H2", "H7")],
            id="campaign-message-then-reply",
        ),
        pytest.param(
            [msg(0, channel="chat", via_campaign=False)], not_counted("H9"), id="not-via-campaign"
        ),
    ],
)
def test_H7_chat_campaign_message_is_billable_at_once(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([portal(0, "track_order")], not_counted("H8"), id="track-order-only"),
        pytest.param(
            [portal(0, "track_order"), auto(0, "order_management")],
            not_counted("H8"),
            id="track-order-with-order-management",
        ),
        pytest.param(
            [portal(0, "start_conversation"), msg(1, "agent", "chat")],
            [final(1, "H1", "H8")],
            id="conversation-with-agent-reply",
        ),
        pytest.param(
            [portal(0, "start_conversation"), msg(0.1, "rule", "chat")],
            not_counted("H8"),
            id="rule-reply-is-not-the-agent",
        ),
        pytest.param(
            [portal(0, "start_conversation")], not_counted("H8"), id="conversation-unanswered"
        ),
        pytest.param(
            [portal(0, "portal_used", campaign_active=True)],
            [final(0, "H7", "H8")],
            id="portal-with-active-campaign",
        ),
        pytest.param(
            [portal(0, "track_order", campaign_active=True)],
            [final(0, "H7", "H8")],
            id="track-order-with-active-campaign",
        ),
    ],
)
def test_H8_self_service_is_billable_only_with_an_agent_reply(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([note(0)], not_counted("H9"), id="internal-note-only"),
        pytest.param([msg(0), note(1), note(2)], not_counted("H9"), id="notes-on-a-request"),
        pytest.param(
            [msg(0), updated(1, assignee="ana"), updated(2, tags=["refund"])]
            + [updated(3, status="closed"), updated(4, priority="high")],
            not_counted("H9"),
            id="changes-without-reply",
        ),
        pytest.param([msg(0), msg(1)], not_counted("H9"), id="nobody-replied"),
    ],
)
def test_H9_notes_changes_and_unanswered_tickets_are_not_billable(events, expected):
    assert helpdesk(events) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [call(0)],
            {HELPDESK_TICKETS: not_counted("H10"), VOICE_TICKETS: [final(0, "V1")]},
            id="voice-only",
        ),
        pytest.param(
            [text(0)],
            {HELPDESK_TICKETS: not_counted("H10"), SMS_TICKETS: [final(0, "S1")]},
            id="sms-only",
        ),
        pytest.param(
            [msg(0, channel="sms"), msg(1, "agent", "sms")],
            {HELPDESK_TICKETS: not_counted("H10"), SMS_TICKETS: [final(1, "S1")]},
            id="sms-reported-as-messages",
        ),
        pytest.param(
            [msg(0), call(1)],
            {HELPDESK_TICKETS: not_counted("H10"), VOICE_TICKETS: [final(1, "V1")]},
            id="unanswered-email-and-a-call",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), call(2), text(3)],
            {
                HELPDESK_TICKETS: [final(1, "H1", "H10")],
                VOICE_TICKETS: [final(2, "H10", "V1")],
                SMS_TICKETS: [final(3, "H10", "S1")],
            },
            id="three-meters-at-once",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), call(2, "ivr_message_only")],
            {HELPDESK_TICKETS: [final(1, "H1")], VOICE_TICKETS: not_counted("V2")},
            id="non-billable-call-cites-no-h10",
        ),
    ],
)
def test_H10_voice_and_sms_never_make_a_ticket_helpdesk_billable(events, expected):
    outcomes = evaluate_tickets(events, as_of=at(LATER))
    found = {meter: rows(outcomes, meter) for meter in expected}
    assert found == expected
    assert {outcome.meter for outcome in outcomes} == set(expected)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([msg(0), msg(0.1, "ai_agent", "chat")], not_counted("H11"), id="ai-reply"),
        pytest.param(
            [msg(0), auto(0.1, "ai_agent"), msg(0.1, "ai_agent")],
            not_counted("H11"),
            id="ai-resolution",
        ),
        pytest.param(
            [msg(0), msg(0.1, "ai_agent"), msg(2, "agent")],
            [final(2, "H1")],
            id="agent-after-ai",
        ),
    ],
)
def test_H11_an_ai_agent_reply_alone_is_not_a_helpdesk_response(events, expected):
    assert helpdesk(events) == expected


def test_H11_ai_resolution_counts_on_automate_instead():
    outcomes = evaluate_tickets([msg(0), auto(0.1, "ai_agent")], as_of=at(LATER))
    assert rows(outcomes, AUTOMATED_INTERACTIONS) == [final(0.1, "A1", "A5")]
    assert rows(outcomes, HELPDESK_TICKETS) == not_counted("H11")


def test_H1_inputs_are_checked_at_the_door():
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(id="e", type="message", occurred_at=datetime(2026, 3, 2, 9, 0))
    with pytest.raises(ValueError, match="names its ticket"):
        evaluate_tickets(
            [Event(id="e", type="message", occurred_at=at(0), author="agent")], as_of=at(1)
        )
    with pytest.raises(ValueError, match="as_of"):
        evaluate_tickets([msg(0)], as_of=datetime(2026, 3, 2, 9, 0))
    assert evaluate_tickets([], as_of=at(0)) == []


def test_H1_outcomes_are_sorted_and_cite_known_rules_in_book_order():
    events = [text(3, ticket="T2"), msg(0, ticket="T2"), call(1, ticket="T1"), msg(2, "agent")]
    outcomes = evaluate_tickets(events, as_of=at(LATER))
    keys = [(o.subject, o.meter, o.unit) for o in outcomes]
    assert keys == sorted(keys)
    assert all(o.rules == tuple(r for r in RULE_IDS if r in o.rules) for o in outcomes)
    assert RULE_IDS[:3] == ("H1", "H2", "H3") and RULE_IDS[-1] == "Z9" and len(RULE_IDS) == 35
