"""Properties of the rules engine over random event streams (hypothesis).

Times sit on a coarse grid of whole hours (plus, sometimes, one second) so that equal
instants and windows of exactly 72 h, the edges where order bugs hide, come up often.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from metering.rules import (
    TICKET_METERS,
    Event,
    evaluate_ai_session,
    evaluate_browser_session,
    evaluate_tickets,
)

from .event_builders import at

TICKETS = ("T1", "T2", "T3")
PROFILE = settings(max_examples=200, deadline=None)

MESSAGE = st.fixed_dictionaries(
    {
        "author": st.sampled_from(["customer", "agent", "rule", "ai_agent"]),
        "channel": st.sampled_from(
            ["email", "chat", "chat", "instagram_dm", "facebook_comment", "sms", "self_service"]
        ),
        "attrs": st.fixed_dictionaries(
            {},
            optional={
                "public": st.booleans(),
                "via_campaign": st.booleans(),
                "requires_resolution": st.booleans(),
            },
        ),
    }
)
CALL = st.fixed_dictionaries(
    {
        "customer": st.sampled_from(["C1", "C2", None]),
        "channel": st.just("phone"),
        "attrs": st.fixed_dictionaries(
            {
                "direction": st.sampled_from(["inbound", "outbound"]),
                "outcome": st.sampled_from(
                    [
                        "answered",
                        "voicemail",
                        "ivr_message_only",
                        "forwarded_external",
                        "forwarded_internal",
                        "missed",
                    ]
                ),
            }
        ),
    }
)
SMS = st.fixed_dictionaries(
    {
        "author": st.sampled_from(["customer", "agent", "rule"]),
        "attrs": st.fixed_dictionaries({"direction": st.sampled_from(["inbound", "outbound"])}),
    }
)
AUTOMATION = st.fixed_dictionaries(
    {
        "attrs": st.fixed_dictionaries(
            {
                "feature": st.sampled_from(["flow", "order_management", "ai_agent"]),
                "outcome": st.sampled_from(["resolved", "resolved", "handover", "spam"]),
            }
        )
    }
)
SELF_SERVICE = st.fixed_dictionaries(
    {
        "attrs": st.fixed_dictionaries(
            {
                "action": st.sampled_from(["track_order", "start_conversation", "portal_used"]),
                "campaign_active": st.booleans(),
            }
        )
    }
)
OTHERS = {
    "internal_note": st.fixed_dictionaries({"author": st.just("agent")}),
    "forward": st.fixed_dictionaries({"author": st.sampled_from(["agent", "rule", None])}),
    "ticket_updated": st.fixed_dictionaries(
        {
            "attrs": st.fixed_dictionaries(
                {"changes": st.sampled_from([{"spam": True}, {"tags": []}])}
            )
        }
    ),
    "ticket_merged": st.fixed_dictionaries(
        {"attrs": st.fixed_dictionaries({"into": st.sampled_from(TICKETS)})}
    ),
}
TICKET_FIELDS = st.one_of(
    MESSAGE.map(lambda f: ("message", f)),
    MESSAGE.map(lambda f: ("message", f)),
    CALL.map(lambda f: ("call", f)),
    SMS.map(lambda f: ("sms", f)),
    AUTOMATION.map(lambda f: ("automation", f)),
    SELF_SERVICE.map(lambda f: ("self_service", f)),
    *(strategy.map(lambda f, t=type_: (t, f)) for type_, strategy in OTHERS.items()),
)
MOMENT = st.tuples(st.integers(0, 240), st.sampled_from([0, 0, 1]))


def _when(moment):
    hours, seconds = moment
    return at(hours, seconds)


@st.composite
def ticket_events(draw):
    """Up to 25 events over three tickets, merges included; ids are unique."""
    drawn = draw(st.lists(st.tuples(TICKET_FIELDS, MOMENT, st.sampled_from(TICKETS)), max_size=25))
    return [
        Event(id=f"e{index}", type=type_, occurred_at=_when(moment), ticket=ticket, **fields)
        for index, ((type_, fields), moment, ticket) in enumerate(drawn)
    ]


def _counted_per_meter(outcomes):
    return {
        meter: sum(1 for o in outcomes if o.counted and o.meter == meter) for meter in TICKET_METERS
    }


def _finals(outcomes):
    return {(o.subject, o.meter, o.unit, o.billable_at) for o in outcomes if o.status == "final"}


@PROFILE
@given(events=ticket_events(), as_of=MOMENT, seed=st.randoms(use_true_random=False))
def test_shuffling_the_events_never_changes_the_outcomes(events, as_of, seed):
    shuffled = list(events)
    seed.shuffle(shuffled)
    assert evaluate_tickets(shuffled, as_of=_when(as_of)) == evaluate_tickets(
        events, as_of=_when(as_of)
    )


@PROFILE
@given(events=ticket_events(), as_of=MOMENT, data=st.data())
def test_duplicating_events_never_changes_the_outcomes(events, as_of, data):
    copies = data.draw(st.lists(st.sampled_from(events), max_size=5)) if events else []
    assert evaluate_tickets([*copies, *events, *copies], as_of=_when(as_of)) == evaluate_tickets(
        events, as_of=_when(as_of)
    )


@PROFILE
@given(
    events=ticket_events(),
    source=st.sampled_from(TICKETS),
    into=st.sampled_from(TICKETS),
    delay=MOMENT,
    as_of=MOMENT,
)
def test_M1_appending_a_merge_never_changes_the_counted_units(events, source, into, delay, as_of):
    last = max((event.occurred_at for event in events), default=at(0))
    merge_at = last + timedelta(hours=delay[0], seconds=delay[1] + 1)
    merge = Event(
        id="merge", type="ticket_merged", occurred_at=merge_at, ticket=source, attrs={"into": into}
    )
    before = evaluate_tickets(events, as_of=_when(as_of))
    after = evaluate_tickets([*events, merge], as_of=_when(as_of))
    assert _counted_per_meter(after) == _counted_per_meter(before)


# A4 both ways: a response's offset from the resolution, in seconds, on a grid that hits
# 0 and exactly 72 h on either side often.
A4_OFFSET = st.tuples(st.integers(-74, 74), st.sampled_from([-1, 0, 0, 1])).map(
    lambda hs: hs[0] * 3600 + hs[1]
)


@PROFILE
@given(
    offset=A4_OFFSET,
    author=st.sampled_from(["agent", "rule"]),
    seed=st.randoms(use_true_random=False),
    as_of=MOMENT,
)
def test_A4_a_response_on_either_side_cancels_within_72h_in_any_arrival_order(
    offset, author, seed, as_of
):
    resolved_at = at(100)
    events = [
        Event(id="request", type="message", occurred_at=at(0), ticket="T1", author="customer"),
        Event(
            id="automation",
            type="automation",
            occurred_at=resolved_at,
            ticket="T1",
            attrs={"feature": "flow", "outcome": "resolved"},
        ),
        Event(
            id="response",
            type="message",
            occurred_at=resolved_at + timedelta(seconds=offset),
            ticket="T1",
            author=author,
            channel="email",
        ),
    ]
    shuffled = list(events)
    seed.shuffle(shuffled)
    outcomes = evaluate_tickets(shuffled, as_of=_when(as_of) + timedelta(hours=100))
    assert outcomes == evaluate_tickets(events, as_of=_when(as_of) + timedelta(hours=100))
    (automated,) = [o for o in outcomes if o.meter == "automated_interactions"]
    # The whole A4 window is closed: [t - 72 h, t + 72 h], the same instant included.
    assert automated.counted == (abs(offset) > 72 * 3600)
    assert "A4" in automated.rules
    assert [o.counted for o in outcomes if o.meter == "helpdesk_tickets"] == [True]


# A later event: what it is, which ticket, and how long after `as_of` (windows are 72 h,
# so offsets stay near that to land inside and outside them).
LATER_TICKET_EVENT = st.tuples(TICKET_FIELDS, st.sampled_from(TICKETS), st.integers(0, 80))


@PROFILE
@given(events=ticket_events(), later=LATER_TICKET_EVENT, wait=st.integers(0, 80))
def test_a_final_unit_is_never_revised_by_a_later_event(events, later, wait):
    # Everything so far happened by `as_of`; the extra event comes after it. Whatever it
    # is, a unit already final stays final with the same billable_at (pending, not final,
    # is the status for anything a future event could still cancel).
    as_of = max((event.occurred_at for event in events), default=at(0)) + timedelta(hours=wait)
    (type_, fields), ticket, offset = later
    extra = Event(
        id="later",
        type=type_,
        occurred_at=as_of + timedelta(hours=offset, seconds=1),
        ticket=ticket,
        **fields,
    )
    before = _finals(evaluate_tickets(events, as_of=as_of))
    after = _finals(evaluate_tickets([*events, extra], as_of=as_of))
    assert before <= after


AI_KINDS = [
    "messaging",
    "advanced_chat",
    "advanced_ticket",
    "autoreply_articles",
    "autoreply_triage",
    "web_widget",
]
AI_ACTION = st.one_of(
    st.sampled_from(
        [
            "started",
            "reply_sent",
            "article_clicked",
            "flow_completed",
            "close_request_clicked",
            "not_understood",
            "user_reply",
            "agent_public_reply",
            "ticket_solved",
            "session_closed",
        ]
    ).map(lambda action: {"action": action}),
    st.fixed_dictionaries(
        {
            "action": st.just("article_suggested"),
            "via": st.sampled_from(["recommendation", "flow_step", "generative"]),
        }
    ),
    st.fixed_dictionaries(
        {"action": st.just("feedback"), "value": st.sampled_from(["positive", "negative"])}
    ),
    st.fixed_dictionaries(
        {"action": st.just("escalated"), "to": st.sampled_from(["agent", "live_chat"])}
    ),
)
EVALUATION = st.fixed_dictionaries(
    {"action": st.just("evaluation"), "relevant": st.booleans(), "resolved": st.booleans()}
)


@st.composite
def ai_events(draw):
    """One session of one random kind: up to 15 actions and verdicts."""
    kind = draw(st.sampled_from(AI_KINDS))
    drawn = draw(st.lists(st.tuples(AI_ACTION | EVALUATION, MOMENT), min_size=1, max_size=15))
    return [
        Event(
            id=f"a{index}",
            type="ai_session",
            occurred_at=_when(moment),
            session="S1",
            attrs={**attrs, "agent_kind": kind},
        )
        for index, (attrs, moment) in enumerate(drawn)
    ]


@PROFILE
@given(events=ai_events(), as_of=MOMENT, seed=st.randoms(use_true_random=False), data=st.data())
def test_ai_session_outcome_ignores_order_and_duplicates(events, as_of, seed, data):
    expected = evaluate_ai_session(events, as_of=_when(as_of))
    copies = data.draw(st.lists(st.sampled_from(events), max_size=4))
    noisy = [*events, *copies]
    seed.shuffle(noisy)
    assert evaluate_ai_session(noisy, as_of=_when(as_of)) == expected
    assert len(expected) == 1


@PROFILE
@given(
    events=ai_events(),
    later=st.lists(st.tuples(AI_ACTION, st.integers(0, 80)), max_size=2),
    wait=st.integers(0, 80),
)
def test_a_final_resolution_is_never_revised_by_later_activity(events, later, wait):
    # The evaluator's verdict is the one thing that may still change a final session (it is
    # the helpdesk's correction, documented); any other later event may not.
    as_of = max(event.occurred_at for event in events) + timedelta(hours=wait)
    extra = [
        Event(
            id=f"later-{index}",
            type="ai_session",
            occurred_at=as_of + timedelta(hours=offset, seconds=1),
            session="S1",
            attrs=attrs,
        )
        for index, (attrs, offset) in enumerate(later)
    ]
    before = _finals(evaluate_ai_session(events, as_of=as_of))
    after = _finals(evaluate_ai_session([*events, *extra], as_of=as_of))
    assert before <= after


@PROFILE
@given(
    moments=st.lists(st.tuples(MOMENT, st.sampled_from(["a", "b"])), max_size=8),
    seed=st.randoms(use_true_random=False),
)
def test_C1_browser_session_ignores_order_and_duplicates(moments, seed):
    clicks = [
        Event(
            id=f"c{index}",
            type="campaign_click",
            occurred_at=_when(moment),
            session="B1",
            attrs={"campaign": c},
        )
        for index, (moment, c) in enumerate(moments)
    ]
    expected = evaluate_browser_session(clicks, as_of=at(0))
    noisy = clicks + clicks[:2]
    seed.shuffle(noisy)
    assert evaluate_browser_session(noisy, as_of=at(0)) == expected
    assert sum(o.counted for o in expected) == min(len(clicks), 3)
    assert len(expected) == min(len(clicks), 3) + (len(clicks) > 3)
