"""Helpdesk tickets (`helpdesk_tickets`, rules H1-H11): which segments of a ticket are billable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from .timeline import WINDOW, Carried, Segment, ordered_rules, split_where, with_carried
from .types import (
    AUTOMATION,
    CALL,
    FORWARD,
    INTERNAL_NOTE,
    MESSAGE,
    SELF_SERVICE,
    SMS,
    TICKET_MERGED,
    TICKET_UPDATED,
    Event,
)

COMMENT_CHANNELS = frozenset({"facebook_comment", "instagram_comment"})
VOICE_SMS_CHANNELS = frozenset({"phone", "sms"})
RESPONDERS = frozenset({"agent", "rule"})
# Bookkeeping, not conversation: it neither keeps a chat alive (H6) nor answers anyone (H9).
BOOKKEEPING = frozenset({TICKET_UPDATED, TICKET_MERGED})


def is_public_response(event: Event) -> bool:
    """A public message from the account's agents or rules, on any channel."""
    return event.type == MESSAGE and event.author in RESPONDERS and bool(event.attr("public", True))


def is_helpdesk_response(event: Event) -> bool:
    """A response that makes a ticket helpdesk-billable (H1, H4), H8 aside."""
    if event.type == FORWARD:
        # A forward is an agent action in the helpdesk UI: a missing author means an agent.
        return event.author in RESPONDERS or event.author is None
    return is_public_response(event) and event.channel not in COMMENT_CHANNELS | VOICE_SMS_CHANNELS


def is_flagged_spam(events: Sequence[Event]) -> bool:
    """H3: the helpdesk marked the ticket as spam (a `ticket_updated` with changes.spam true)."""
    for event in events:
        changes = event.attr("changes") if event.type == TICKET_UPDATED else None
        if isinstance(changes, Mapping) and changes.get("spam") is True:
            return True
    return False


def helpdesk_segments(events: Sequence[Event], carried: Carried = ()) -> list[Segment]:
    """One Segment per billing ticket of H6 (always at least one), from a ticket's timeline."""
    flagged_spam = is_flagged_spam(events)
    runs = split_chat_segments(list(events), carried) or [[]]
    return [_judge(number, run, flagged_spam) for number, run in enumerate(runs, start=1)]


def split_chat_segments(events: list[Event], carried: Carried = ()) -> list[list[Event]]:
    """H6: a customer chat message after more than 72 h without activity opens a segment."""
    opens: list[bool] = []
    last_activity: datetime | None = None
    for event, arrived in with_carried(events, carried):
        for old in arrived:
            if old.type not in BOOKKEEPING:
                last_activity = max(last_activity or old.occurred_at, old.occurred_at)
        opens.append(
            last_activity is not None
            and event.type == MESSAGE
            and event.author == "customer"
            and event.channel == "chat"
            and event.occurred_at - last_activity > WINDOW
        )
        if event.type not in BOOKKEEPING:
            last_activity = event.occurred_at
    return split_where(events, opens)


def _judge(number: int, run: list[Event], flagged_spam: bool) -> Segment:
    # The first segment is open downwards so that a merge cover placed before the ticket's
    # first event still lands in it.
    starts_at = run[0].occurred_at if number > 1 else None
    triggers = _triggers(run)
    if not triggers:
        return Segment(number, starts_at, None, ordered_rules(_why_not(run)))
    billable_at, rules = triggers[0]
    extra = []
    if len(triggers) > 1:
        extra.append("H2")
    if number > 1:
        extra.append("H6")
    if flagged_spam:
        extra.append("H3")
    return Segment(number, starts_at, billable_at, ordered_rules((*rules, *extra)))


def _triggers(run: list[Event]) -> list[tuple[datetime, tuple[str, ...]]]:
    self_service = _started_in_self_service(run)
    found = []
    for event in run:
        rules = _trigger_rules(event, self_service)
        if rules:
            found.append((event.occurred_at, rules))
    return found


def _trigger_rules(event: Event, self_service: bool) -> tuple[str, ...]:
    """The rules by which `event` makes its segment billable, or () when it does not."""
    if event.type == MESSAGE and event.author == "customer" and event.attr("via_campaign", False):
        return ("H7",)
    if event.type == SELF_SERVICE and event.attr("campaign_active", False):
        return ("H7", "H8")
    if not is_helpdesk_response(event):
        return ()
    rule = "H4" if event.type == FORWARD else "H1"
    if not self_service:
        return (rule,)
    # H8 speaks of "the agent replies": on a self-service ticket a rule's auto-reply is the
    # portal talking, not the conversation with an agent the customer asked for.
    return (rule, "H8") if event.author != "rule" else ()


def _started_in_self_service(run: list[Event]) -> bool:
    first = next((event for event in run if event.type not in BOOKKEEPING), None)
    if first is None:
        return False
    return first.type == SELF_SERVICE or (first.type == MESSAGE and first.channel == SELF_SERVICE)


def _why_not(run: list[Event]) -> set[str]:
    """The rules that explain why a segment with no trigger is not a billable ticket."""
    self_service = _started_in_self_service(run)
    reasons = {reason for event in run if (reason := _reason(event, self_service))}
    # H9 also says "a ticket nobody replied to": the answer when nothing else explains it.
    return reasons or {"H9"}


def _reason(event: Event, self_service: bool) -> str | None:
    if event.author == "ai_agent" or (
        event.type == AUTOMATION and event.attr("feature") == "ai_agent"
    ):
        return "H11"
    if event.type == MESSAGE and event.channel in COMMENT_CHANNELS:
        # A customer's own comment is the request, not a reason; the reply to it is H5.
        return "H5" if is_public_response(event) else None
    if event.type in (CALL, SMS) or (event.type == MESSAGE and event.channel in VOICE_SMS_CHANNELS):
        return "H10"
    if event.type == SELF_SERVICE or (self_service and is_helpdesk_response(event)):
        return "H8"
    if event.type in (INTERNAL_NOTE, TICKET_UPDATED) or (
        event.type == MESSAGE and event.author in RESPONDERS
    ):
        # Internal notes, ticket changes, and the agents' private (non-public) messages.
        return "H9"
    # The customer's own messages are the request, not a reason: when nothing else explains
    # the verdict, H9's "nobody replied" does (see _why_not).
    return None
