"""Automated resolutions, rules Z1-Z7 (one AI conversation session at a time), and Z9's pause."""

from __future__ import annotations

import pytest

from metering.rules import (
    AI_SESSION,
    AUTOMATED_RESOLUTIONS,
    apply_hard_cap,
    evaluate_ai_session,
)

from .event_builders import LATER, ai, at, final, not_counted, pending, rows

RELEVANT_RESOLVED = {"relevant": True, "resolved": True}


def resolution(events, as_of=LATER, session="S1"):
    return rows(evaluate_ai_session(events, as_of=at(as_of)), AUTOMATED_RESOLUTIONS, session)


def verdict(hours, *, relevant=True, resolved=True):
    return ai(hours, "evaluation", relevant=relevant, resolved=resolved)


def started(hours=0, kind="messaging", session="S1"):
    return ai(hours, "started", kind=kind, session=session)


def test_Z1_counted_per_session_not_per_user():
    # One person on two channels: two sessions, two resolutions.
    chat = [started(), ai(0.1, "reply_sent"), ai(0.2, "flow_completed"), verdict(1)]
    other = [
        started(5, session="S2"),
        ai(5.1, "reply_sent", session="S2"),
        ai(5.2, "flow_completed", session="S2"),
        ai(6, "evaluation", session="S2", relevant=True, resolved=True),
    ]
    assert resolution(chat) == [final(72.2, "Z1", "Z2")]
    assert resolution(other, session="S2") == [final(77.2, "Z1", "Z2")]
    (outcome,) = evaluate_ai_session(other, as_of=at(LATER))
    assert (outcome.subject_kind, outcome.subject) == (AI_SESSION, "S2")


@pytest.mark.parametrize(
    ("events", "message"),
    [
        pytest.param([started(), started(1, session="S2")], "session", id="two-sessions"),
        pytest.param(
            [started(), ai(1, "reply_sent", kind="web_widget")], "agent_kind", id="two-kinds"
        ),
        pytest.param([ai(0, "started")], "agent_kind", id="no-kind"),
        pytest.param([started(kind="robot")], "unknown agent_kind", id="unknown-kind"),
    ],
)
def test_Z1_one_session_of_one_kind_per_evaluation(events, message):
    with pytest.raises(ValueError, match=message):
        evaluate_ai_session(events, as_of=at(LATER))


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [started(), ai(1, "reply_sent"), ai(2, "feedback", value="positive")]
            + [verdict(3, resolved=False)],
            [final(74, "Z1", "Z2")],
            id="positive-feedback",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), ai(2, "feedback", value="negative")] + [verdict(3)],
            not_counted("Z2"),
            id="negative-feedback",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), verdict(3)],
            [final(73, "Z1", "Z2")],
            id="no-feedback-evaluated-resolved",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), verdict(3, resolved=False)],
            not_counted("Z2"),
            id="no-feedback-evaluated-unresolved",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), verdict(3, relevant=False)],
            not_counted("Z2"),
            id="irrelevant-answer",
        ),
        pytest.param([started(), ai(1, "reply_sent")], not_counted("Z2"), id="no-evaluation-yet"),
        pytest.param(
            [started(), ai(1, "article_suggested", via="recommendation")]
            + [verdict(3, resolved=False)],
            not_counted("Z2"),
            id="recommended-article-not-clicked",
        ),
        pytest.param(
            [started(), ai(1, "article_suggested", via="recommendation")]
            + [ai(2, "article_clicked"), verdict(3, resolved=False)],
            [final(74, "Z1", "Z2")],
            id="recommended-article-clicked",
        ),
        pytest.param(
            [started(), ai(1, "article_suggested", via="flow_step")]
            + [ai(2, "article_clicked"), verdict(3, resolved=False)],
            [final(74, "Z1", "Z2")],
            id="flow-step-article-clicked",
        ),
        pytest.param(
            [started(), ai(1, "article_suggested", via="generative")]
            + [verdict(3, resolved=False)],
            [final(73, "Z1", "Z2")],
            id="generative-article-needs-no-click",
        ),
        pytest.param(
            [started(), ai(1, "flow_completed"), verdict(3, resolved=False)],
            [final(73, "Z1", "Z2")],
            id="answer-flow-completed",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), ai(50, "user_reply"), ai(51, "reply_sent")]
            + [verdict(130)],
            [final(123, "Z1", "Z2")],
            id="inactivity-counts-from-the-last-interaction",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), verdict(3), ai(80, "escalated", to="agent")],
            [final(73, "Z1", "Z2")],
            id="events-after-the-session-are-ignored",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), ai(73, "user_reply"), ai(100, "escalated")]
            + [verdict(3)],
            not_counted("Z2", "Z4"),
            id="activity-at-exactly-72h-keeps-the-session-open",
        ),
        pytest.param(
            [started(), ai(1, "reply_sent"), ai(73, "user_reply", seconds=1)]
            + [ai(100, "escalated"), verdict(3)],
            [final(73, "Z1", "Z2")],
            id="activity-after-72h-is-another-session",
        ),
    ],
)
def test_Z2_messaging_resolution_after_72h_of_inactivity(events, expected):
    assert resolution(events) == expected


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        pytest.param(2, [pending(73, "Z1", "Z2")], id="open"),
        pytest.param(72.99, [pending(73, "Z1", "Z2")], id="just-before-end"),
        pytest.param(73, [final(73, "Z1", "Z2")], id="end"),
        pytest.param(200, [final(73, "Z1", "Z2")], id="later"),
    ],
)
def test_Z2_pending_then_final_across_as_of(as_of, expected):
    events = [started(), ai(1, "reply_sent"), verdict(1.5)]
    assert resolution(events, as_of) == expected
    (outcome,) = evaluate_ai_session(events, as_of=at(as_of))
    assert outcome.pending_until == (at(73) if outcome.status == "pending" else None)


def test_Z2_escalation_in_the_window_cancels_a_pending_resolution():
    events = [started(), ai(1, "reply_sent"), verdict(1.5)]
    assert resolution(events, 10) == [pending(73, "Z1", "Z2")]
    escalated = [*events, ai(73, "escalated", to="agent")]
    assert resolution(escalated, 80) == not_counted("Z2", "Z4")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [started(kind="advanced_chat"), ai(1, "reply_sent")]
            + [ai(2, "session_closed"), verdict(2.5)],
            [final(2, "Z1", "Z3")],
            id="chat-closed-by-the-configured-timeout",
        ),
        pytest.param(
            [started(kind="advanced_chat"), ai(1, "reply_sent")] + [verdict(2.5)],
            [final(73, "Z1", "Z3")],
            id="chat-default-72h-inactivity",
        ),
        pytest.param(
            [started(kind="advanced_chat"), ai(1, "reply_sent")] + [verdict(2.5, resolved=False)],
            not_counted("Z3"),
            id="chat-fails-the-check",
        ),
        pytest.param(
            [started(kind="advanced_chat"), ai(1, "article_suggested")] + [verdict(2.5)],
            not_counted("Z3"),
            id="chat-without-a-reply",
        ),
        pytest.param(
            [started(kind="advanced_ticket"), ai(1, "reply_sent")]
            + [ai(30, "user_reply"), ai(31, "reply_sent"), verdict(72)],
            [final(72, "Z1", "Z3")],
            id="ticket-72h-after-first-message",
        ),
        pytest.param(
            [started(kind="advanced_ticket"), verdict(72)],
            not_counted("Z3"),
            id="ticket-actions-alone",
        ),
        pytest.param(
            [started(kind="advanced_ticket"), ai(1, "reply_sent")]
            + [ai(80, "agent_public_reply"), verdict(72)],
            [final(72, "Z1", "Z3")],
            id="ticket-agent-after-evaluation-time",
        ),
    ],
)
def test_Z3_advanced_ai_agent_counts_when_it_passes_the_check(events, expected):
    assert resolution(events) == expected


def test_Z3_ticket_is_pending_until_72h_after_the_first_message():
    events = [started(kind="advanced_ticket"), ai(1, "reply_sent"), verdict(2)]
    assert resolution(events, 10) == [pending(72, "Z1", "Z3")]
    assert resolution(events, 72) == [final(72, "Z1", "Z3")]


@pytest.mark.parametrize(
    ("kind", "events", "expected"),
    [
        ("messaging", [ai(1, "reply_sent"), ai(2, "flow_completed")], not_counted("Z2", "Z4")),
        ("advanced_chat", [ai(1, "reply_sent")], not_counted("Z3", "Z4")),
        ("advanced_ticket", [ai(1, "reply_sent")], not_counted("Z3", "Z4")),
        ("autoreply_articles", [ai(1, "close_request_clicked")], not_counted("Z4", "Z5")),
        ("autoreply_triage", [ai(1, "reply_sent")], not_counted("Z4", "Z6")),
        (
            "web_widget",
            [ai(1, "article_suggested"), ai(2, "article_clicked")],
            not_counted("Z4", "Z7"),
        ),
    ],
)
def test_Z4_escalation_to_a_human_is_never_counted(kind, events, expected):
    session = [started(kind=kind), ai(0.5, "escalated", to="agent"), *events]
    assert resolution([*session, verdict(3)]) == expected


@pytest.mark.parametrize(
    ("events", "as_of", "expected"),
    [
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "close_request_clicked")],
            2,
            [final(2, "Z1", "Z5")],
            id="yes-close-my-request",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(5, "article_clicked")],
            10,
            [pending(73, "Z1", "Z5")],
            id="clicked-window-open",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(5, "article_clicked")],
            73,
            [final(73, "Z1", "Z5")],
            id="clicked-no-reply-ever",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(73, "article_clicked")],
            LATER,
            [final(73, "Z1", "Z5")],
            id="clicked-at-exactly-72h",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(73, "article_clicked", seconds=1)],
            LATER,
            not_counted("Z5"),
            id="clicked-after-72h",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(5, "article_clicked"), ai(9, "ticket_solved")],
            9,
            [final(9, "Z1", "Z5")],
            id="clicked-then-solved",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(5, "article_clicked"), ai(7, "user_reply")]
            + [ai(9, "ticket_solved")],
            LATER,
            not_counted("Z5"),
            id="user-replied-before-solve",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(5, "article_clicked"), ai(40, "agent_public_reply")],
            LATER,
            not_counted("Z5"),
            id="agent-replied",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(40, "user_reply")], LATER, not_counted("Z5"), id="no"
        ),
    ],
)
def test_Z5_auto_reply_with_articles(events, as_of, expected):
    session = [started(kind="autoreply_articles"), *events]
    assert resolution(session, as_of) == expected


@pytest.mark.parametrize(
    ("events", "as_of", "expected"),
    [
        pytest.param([ai(1, "reply_sent")], 20, [pending(73, "Z1", "Z6")], id="window-open"),
        pytest.param([ai(1, "reply_sent")], 73, [final(73, "Z1", "Z6")], id="no-reply-72h"),
        pytest.param(
            [ai(1, "reply_sent"), ai(73, "user_reply")],
            LATER,
            not_counted("Z6"),
            id="user-reply-at-exactly-72h",
        ),
        pytest.param(
            [ai(1, "reply_sent"), ai(73, "user_reply", seconds=1)],
            LATER,
            [final(73, "Z1", "Z6")],
            id="user-reply-after-72h",
        ),
        pytest.param(
            [ai(1, "reply_sent"), ai(2, "agent_public_reply")],
            LATER,
            not_counted("Z6"),
            id="agent-public-reply",
        ),
        pytest.param([ai(1, "ticket_solved")], LATER, not_counted("Z6"), id="no-auto-reply"),
    ],
)
def test_Z6_intelligent_triage_auto_reply_with_no_reply_within_72h(events, as_of, expected):
    session = [started(kind="autoreply_triage"), *events]
    assert resolution(session, as_of) == expected


@pytest.mark.parametrize(
    ("events", "as_of", "expected"),
    [
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "article_clicked")],
            LATER,
            [final(74, "Z1", "Z7")],
            id="preview-clicked",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "feedback", value="positive")],
            LATER,
            [final(74, "Z1", "Z7")],
            id="positive-feedback",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "article_clicked"), ai(3, "session_closed")],
            3,
            [final(3, "Z1", "Z7")],
            id="tab-closed-ends-the-session",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "article_clicked")],
            10,
            [pending(74, "Z1", "Z7")],
            id="session-still-open",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "article_clicked"), ai(3, "session_closed")]
            + [ai(4, "escalated", to="live_chat")],
            LATER,
            [final(3, "Z1", "Z7")],
            id="after-the-tab-closed-is-another-visit",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "article_clicked")]
            + [ai(3, "escalated", to="live_chat")],
            LATER,
            not_counted("Z4", "Z7"),
            id="live-chat",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "escalated", to="contact_form")],
            LATER,
            not_counted("Z4", "Z7"),
            id="contact-form",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "escalated", to="callback")],
            LATER,
            not_counted("Z4", "Z7"),
            id="call-back",
        ),
        pytest.param(
            [ai(1, "article_suggested"), ai(2, "article_clicked")]
            + [ai(3, "feedback", value="negative")],
            LATER,
            not_counted("Z7"),
            id="negative-feedback",
        ),
        pytest.param(
            [ai(1, "not_understood"), ai(2, "article_suggested"), ai(3, "article_clicked")],
            LATER,
            not_counted("Z7"),
            id="bot-did-not-understand",
        ),
        pytest.param(
            [ai(1, "feedback", value="positive")], LATER, not_counted("Z7"), id="no-suggestion"
        ),
        pytest.param(
            [ai(1, "article_suggested")], LATER, not_counted("Z7"), id="suggested-not-clicked"
        ),
    ],
)
def test_Z7_classic_web_widget(events, as_of, expected):
    session = [started(kind="web_widget"), *events]
    assert resolution(session, as_of) == expected


def test_Z9_pause_at_the_monthly_limit_records_resolutions_without_billing():
    outcomes = []
    for n, hours in enumerate([5, 1, 3]):
        session = f"S{n}"
        events = [started(hours, session=session), ai(hours, "flow_completed", session=session)]
        events.append(ai(hours + 1, "evaluation", session=session, **RELEVANT_RESOLVED))
        outcomes += evaluate_ai_session(events, as_of=at(76))
    # S1 (ends at 73 h) and S2 (75 h) are final at 76 h; S0 (77 h) is still pending.
    billed, capped = apply_hard_cap(outcomes, limit=2, rule="Z9")
    assert [(o.subject, o.status) for o in billed] == [("S1", "final"), ("S2", "final")]
    assert [(o.subject, o.status, o.pending_until, o.rules) for o in capped] == [
        ("S0", "not_counted", None, ("Z1", "Z2", "Z9"))
    ]
    assert capped[0].billable_at == at(77)
