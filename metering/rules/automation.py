"""Automated interactions (`automated_interactions`, rules A1-A5), one per ticket at most."""

from __future__ import annotations

from collections.abc import Sequence

from .helpdesk import RESPONDERS, is_helpdesk_response, is_public_response
from .timeline import WINDOW, Segment, ordered_rules
from .types import AUTOMATION, CALL, MESSAGE, SELF_SERVICE, SMS, Event


def automation_segments(events: Sequence[Event]) -> list[Segment]:
    """The ticket's automated interaction, or why there is none; [] without automation."""
    automations = [event for event in events if event.type == AUTOMATION]
    if not automations:
        return []
    reasons: set[str] = set()
    for automation in automations:
        if automation.attr("outcome") != "resolved":
            # A3: a handover or a spam close is not a resolution; anything else unknown
            # is not one either (A1 needs the request resolved).
            outcome = automation.attr("outcome")
            reasons.add("A3" if outcome in ("handover", "spam") else "A1")
            continue
        window = _window_after(automation, events)
        cancelled = set().union(*(_cancels(event) for event in window))
        if any(_answers_before(event, automation) for event in events):
            cancelled.add("A4")
        if cancelled:
            reasons |= cancelled | {"A1"}
            continue
        # The first resolution that stands is the ticket's one automated interaction (the
        # seeds bill "the ticket" as an automated interaction, once).
        return [_counted(automation, window, events)]
    return [Segment(1, None, None, ordered_rules(reasons))]


def _window_after(automation: Event, events: Sequence[Event]) -> list[Event]:
    # "Within the following 72 hours": strictly after (what happened at the same instant is
    # the request itself, not a follow-up) and up to exactly 72 h included (A4).
    start, end = automation.occurred_at, automation.occurred_at + WINDOW
    return [event for event in events if start < event.occurred_at <= end]


def _answers_before(event: Event, automation: Event) -> bool:
    """A4 the other way round: an agent or rule response shortly before the resolution."""
    # Issue 20 reads A4's "less than 72 hours" as a distance, whichever comes first: a rule's
    # auto-ack a few seconds before a flow resolves is the helpdesk answering that same request.
    # Only A4 looks back: a customer message before the automation is the request it answers.
    # The mirror of the window after, from exactly 72 h before (included) up to and including
    # the automation's own instant (a rule firing in the same second is 0 s away, well within
    # 72 h), so the whole A4 window is the closed [t - 72 h, t + 72 h].
    start, end = automation.occurred_at - WINDOW, automation.occurred_at
    return is_helpdesk_response(event) and start <= event.occurred_at <= end


def _counted(automation: Event, window: list[Event], events: Sequence[Event]) -> Segment:
    start, end = automation.occurred_at - WINDOW, automation.occurred_at + WINDOW
    rules = ["A1", "A5"]
    if any(_needs_no_resolution(event) for event in window):
        rules.append("A2")
    # A response more than 72 h away, before or after, leaves both meters counting; A4 says
    # why (one inside [start, end] would have cancelled this automation).
    if any(
        is_helpdesk_response(event) and not start <= event.occurred_at <= end for event in events
    ):
        rules.append("A4")
    return Segment(1, None, automation.occurred_at, ordered_rules(rules), pending_until=end)


def _needs_no_resolution(event: Event) -> bool:
    return (
        event.type == MESSAGE
        and event.author == "customer"
        and event.attr("requires_resolution") is False
    )


def _cancels(event: Event) -> set[str]:
    """Why `event`, inside the window, means the customer ended up talking to an agent."""
    if is_helpdesk_response(event):
        return {"A4"}
    if event.type == MESSAGE and event.author == "customer":
        # A follow-up needs an agent unless the helpdesk says it does not (A2): an unflagged
        # message is a request, so the automation did not resolve it.
        return set() if event.attr("requires_resolution") is False else {"A1"}
    if is_public_response(event):
        return {"A1"}  # an agent on a comment, by phone or SMS is still an agent
    if event.type == SMS and event.author in RESPONDERS:
        return {"A1"}
    if event.type == CALL and event.attr("outcome") == "answered":
        return {"A1"}
    if event.type == SELF_SERVICE and event.attr("action") == "start_conversation":
        return {"A1"}
    if event.type == AUTOMATION and event.attr("outcome") == "handover":
        return {"A1", "A3"}
    return set()
