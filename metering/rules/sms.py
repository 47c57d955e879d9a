"""SMS tickets (`sms_tickets`, rules S1-S2): a ticket counts once when the account texted out."""

from __future__ import annotations

from collections.abc import Sequence

from .helpdesk import RESPONDERS, is_public_response
from .timeline import Segment
from .types import MESSAGE, SMS, Event


def is_sms_event(event: Event) -> bool:
    """An `sms` event, or a `message` the helpdesk reported on the sms channel."""
    return event.type == SMS or (event.type == MESSAGE and event.channel == "sms")


def is_outbound_sms(event: Event) -> bool:
    """S1: an SMS sent to the customer by an agent or a rule."""
    if event.type == SMS:
        # An SMS written by an agent or a rule can only go out; trust an explicit direction.
        return event.author in RESPONDERS and event.attr("direction") != "inbound"
    # H10 keeps these messages off the helpdesk meter, so they must count here or a texted
    # reply would go unbilled.
    return is_public_response(event) and event.channel == "sms"


def sms_segments(events: Sequence[Event]) -> list[Segment]:
    """The ticket's one SMS unit (S2), or [] when the ticket has no SMS at all."""
    if not any(is_sms_event(event) for event in events):
        return []
    sent = [event for event in events if is_sms_event(event) and is_outbound_sms(event)]
    if not sent:
        return [Segment(1, None, None, ("S1",))]
    rules = ("S1", "S2") if len(sent) > 1 else ("S1",)
    return [Segment(1, None, sent[0].occurred_at, rules)]
