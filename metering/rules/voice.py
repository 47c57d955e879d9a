"""Voice tickets (`voice_tickets`, rules V1-V5): which segments of a ticket's calls are billable."""

from __future__ import annotations

from collections.abc import Sequence

from .timeline import WINDOW, Carried, Segment, ordered_rules, split_where, with_carried
from .types import CALL, Event

# V1: answered either way, a voicemail either way (IVR voicemail in, customer's voicemail
# out), or an IVR forward to an external number.
BILLABLE_OUTCOMES = frozenset({"answered", "voicemail", "forwarded_external"})
# V2: an IVR that only played a message, or a forward to one of the account's own numbers.
IVR_ONLY_OUTCOMES = frozenset({"ivr_message_only", "forwarded_internal"})


def voice_segments(events: Sequence[Event], carried: Carried = ()) -> list[Segment]:
    """One Segment per voice ticket of V4; [] when the ticket has no call at all."""
    calls = [event for event in events if event.type == CALL]
    if not calls:
        return []
    runs = split_where(calls, _v4_opens(calls, carried))
    return [_judge(number, run) for number, run in enumerate(runs, start=1)]


def _v4_opens(calls: list[Event], carried: Carried) -> list[bool]:
    """V4: an inbound call from the same customer > 72 h after the ticket's last call."""
    opens = []
    last: Event | None = None
    for call, arrived in with_carried(calls, carried):
        for old in arrived:
            if old.type == CALL and (last is None or old.occurred_at > last.occurred_at):
                last = old
        opens.append(
            last is not None
            and call.attr("direction") == "inbound"
            and call.occurred_at - last.occurred_at > WINDOW
            and _same_customer(last, call)
        )
        last = call
    return opens


def _same_customer(previous: Event, call: Event) -> bool:
    # The helpdesk may leave `customer` out when it is the ticket's requester; an unknown
    # side is that requester, so only two different known customers differ.
    return previous.customer is None or call.customer is None or previous.customer == call.customer


def _judge(number: int, run: list[Event]) -> Segment:
    starts_at = run[0].occurred_at if number > 1 else None
    outcomes = [call.attr("outcome") for call in run]
    billable = [call for call in run if call.attr("outcome") in BILLABLE_OUTCOMES]
    if not billable:
        # An empty run is the carried past of a merged ticket: nothing of its own counts.
        reasons = {"V2" if outcome in IVR_ONLY_OUTCOMES else "V1" for outcome in outcomes}
        return Segment(number, starts_at, None, ordered_rules(reasons or {"V1"}))
    rules = ["V1"]
    if len(run) > 1:
        rules.append("V3")
    if number > 1:
        rules.append("V4")
    if billable[0].attr("outcome") == "voicemail":
        rules.append("V5")
    if "forwarded_internal" in outcomes:
        # The internal forward rode on the one ticket: "charged once".
        rules.append("V2")
    return Segment(number, starts_at, billable[0].occurred_at, ordered_rules(rules))
