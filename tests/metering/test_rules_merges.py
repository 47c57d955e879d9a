"""Merges, rule M1: billability per source ticket; later events follow the survivor."""

from __future__ import annotations

import random

import pytest

from metering.rules import (
    AUTOMATED_INTERACTIONS,
    HELPDESK_TICKETS,
    SMS_TICKETS,
    VOICE_TICKETS,
    evaluate_tickets,
)

from .event_builders import LATER, at, auto, call, counted_units, final, merged, msg, rows, text

H, V, S, A = HELPDESK_TICKETS, VOICE_TICKETS, SMS_TICKETS, AUTOMATED_INTERACTIONS


def units(events, as_of=LATER):
    return counted_units(evaluate_tickets(events, as_of=at(as_of)))


def total(found, meter):
    return sum(n for (_, m), n in found.items() if m == meter)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0), msg(1, "agent"), msg(2, ticket="T2"), merged(5, "T2", "T1")],
            {("T1", H): 1},
            id="billable-plus-non-billable-helpdesk",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), msg(2, ticket="T2"), merged(5, "T1", "T2")],
            {("T1", H): 1},
            id="billable-merged-into-non-billable",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), msg(2, ticket="T2"), msg(3, "agent", ticket="T2")]
            + [merged(5, "T2", "T1")],
            {("T1", H): 1, ("T2", H): 1},
            id="two-billable-helpdesk",
        ),
        pytest.param(
            [call(0), text(1, ticket="T2"), merged(5, "T2", "T1")],
            {("T1", V): 1, ("T2", S): 1},
            id="billable-voice-plus-billable-sms",
        ),
        pytest.param(
            [call(0), call(1, ticket="T2"), merged(5, "T2", "T1")],
            {("T1", V): 1, ("T2", V): 1},
            id="two-billable-voice",
        ),
        pytest.param(
            [call(0), call(1, "ivr_message_only", ticket="T2"), merged(5, "T2", "T1")],
            {("T1", V): 1},
            id="billable-plus-non-billable-voice",
        ),
        pytest.param(
            [text(0), text(1, ticket="T2"), merged(5, "T2", "T1")],
            {("T1", S): 1, ("T2", S): 1},
            id="two-billable-sms",
        ),
        pytest.param(
            [text(0), text(1, "customer", "inbound", ticket="T2"), merged(5, "T2", "T1")],
            {("T1", S): 1},
            id="billable-plus-non-billable-sms",
        ),
    ],
)
def test_M1_merging_never_changes_billed_counts(events, expected):
    assert units(events) == expected
    # ... which is what the same tickets count without the merge.
    assert units([e for e in events if e.type != "ticket_merged"]) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [msg(0), merged(5, "T1", "T2"), msg(6, "agent")],
            {("T2", H): 1},
            id="reply-naming-the-merged-ticket-goes-to-survivor",
        ),
        pytest.param(
            [msg(0), merged(5, "T1", "T2"), msg(5, "agent")],
            {("T1", H): 1},
            id="event-at-the-merge-instant-stays",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), merged(5, "T1", "T2"), msg(6, "agent", ticket="T2")],
            {("T1", H): 1},
            id="survivor-of-a-billed-ticket-is-that-ticket",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), merged(5, "T1", "T2"), msg(6, "agent")],
            {("T1", H): 1},
            id="reply-after-merge-on-billed-source",
        ),
        pytest.param(
            [call(0), merged(5, "T1", "T2"), call(6, ticket="T2")],
            {("T1", V): 1},
            id="voice-counts-once-across-a-merge",
        ),
        pytest.param(
            [msg(0), merged(5, "T1", "T2"), merged(6, "T2", "T3"), msg(7, "agent")],
            {("T3", H): 1},
            id="chain-a-b-c",
        ),
        pytest.param(
            [msg(0), msg(1, "agent"), merged(5, "T1", "T2"), merged(6, "T2", "T3")]
            + [msg(7, "agent", ticket="T3")],
            {("T1", H): 1},
            id="chain-hands-the-unit-on",
        ),
        pytest.param(
            [msg(0, ticket="T2"), msg(1, "agent", ticket="T2"), merged(5, "T1", "T2")]
            + [msg(6, "agent")],
            {("T2", H): 1},
            id="survivor-already-billed",
        ),
        pytest.param(
            [auto(0), merged(5, "T1", "T2"), auto(6, ticket="T2")],
            {("T1", A): 1},
            id="automated-interaction-counts-once",
        ),
        pytest.param(
            [msg(0), merged(5, "T1", "T2"), merged(4, "T2", "T1"), msg(6, "agent")],
            {("T2", H): 1},
            id="merge-loop-in-the-data",
        ),
        pytest.param(
            [msg(0), merged(5, "T1", "T2"), merged(8, "T1", "T3"), msg(10, "agent")],
            {("T2", H): 1},
            id="a-ticket-is-merged-once",
        ),
    ],
)
def test_M1_events_after_the_merge_apply_to_the_survivor(events, expected):
    assert units(events) == expected


def test_M1_covered_survivor_says_why():
    events = [msg(0), msg(1, "agent"), merged(5, "T1", "T2"), msg(6, "agent")]
    outcomes = evaluate_tickets(events, as_of=at(LATER))
    assert rows(outcomes, H, "T1") == [final(1, "H1", "M1")]
    assert rows(outcomes, H, "T2") == [(0, "not_counted", None, ("H2", "M1"))]


def test_M1_survivor_named_only_by_the_merge_appears():
    outcomes = evaluate_tickets([msg(0), merged(5, "T1", "T2")], as_of=at(LATER))
    assert [(o.subject, o.meter, o.rules) for o in outcomes] == [
        ("T1", H, ("H9", "M1")),
        ("T2", H, ("H9", "M1")),
    ]


def test_M1_a_chat_segment_after_the_merge_is_billed_on_its_own():
    # The survivor took in a billed ticket, then the customer came back after 4 days: H6.
    events = [msg(0, channel="chat"), msg(1, "agent", "chat"), merged(5, "T1", "T2")]
    events += [msg(100, channel="chat"), msg(101, "agent", "chat")]
    outcomes = evaluate_tickets(events, as_of=at(LATER))
    assert rows(outcomes, H, "T2") == [final(101, "H1", "H6", "M1", unit=2)]


@pytest.mark.parametrize("seed", range(5))
def test_M1_a_family_gives_each_ticket_the_same_result_in_any_order(seed):
    events = [msg(0), msg(1, "agent"), call(2, ticket="T2"), merged(5, "T2", "T1")]
    events += [merged(6, "T1", "T3"), text(7, ticket="T2"), msg(8, "agent", ticket="T3")]
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    expected = evaluate_tickets(events, as_of=at(LATER))
    assert evaluate_tickets(shuffled, as_of=at(LATER)) == expected
    found = counted_units(expected)
    assert (total(found, H), total(found, V), total(found, S)) == (1, 1, 1)


@pytest.mark.parametrize(
    "after",
    [
        pytest.param([msg(50, channel="chat"), msg(51, "agent", "chat")], id="chat-within-72h"),
        pytest.param([msg(100, channel="chat"), msg(101, "agent", "chat")], id="chat-after-72h"),
        pytest.param([call(50)], id="call-within-72h"),
        pytest.param([call(100)], id="call-after-72h"),
        pytest.param([call(100, customer="C2")], id="other-customer-call-after-72h"),
        pytest.param([text(100)], id="sms-after-merge"),
        pytest.param([msg(100), msg(101, "agent")], id="email-after-merge"),
    ],
)
def test_M1_continuing_a_merged_ticket_bills_what_the_unmerged_ticket_would(after):
    # T1 was billed on chat and voice, then merged into T2; the conversation goes on, the
    # customer still writing and calling on T1's thread.
    before = [msg(0, channel="chat"), msg(1, "agent", "chat"), call(2), text(3)]
    with_merge = units([*before, merged(5, "T1", "T2"), *after])
    without = units([*before, msg(4, ticket="T2"), *after])
    for meter in (H, V, S):
        assert total(with_merge, meter) == total(without, meter), meter
