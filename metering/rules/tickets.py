"""A family of tickets linked by merges: every ticket meter of every ticket, with M1 applied."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from .automation import automation_segments
from .helpdesk import helpdesk_segments
from .merges import Merge, find_merges, handovers, involved, route
from .sms import sms_segments
from .timeline import Carried, Segment, canonical, ordered_rules, require_aware, window_status
from .types import (
    AUTOMATED_INTERACTIONS,
    FINAL,
    HELPDESK_TICKETS,
    NOT_COUNTED,
    SMS_TICKETS,
    TICKET,
    TICKET_EVENT_TYPES,
    VOICE_TICKETS,
    Event,
    Outcome,
)
from .voice import voice_segments

# The rule that makes each ticket meter count "once" (H2, V3, S2, A1): a survivor that took
# in a ticket already counted on a meter is that same unit after the merge.
ONCE_RULES = {
    HELPDESK_TICKETS: "H2",
    AUTOMATED_INTERACTIONS: "A1",
    VOICE_TICKETS: "V3",
    SMS_TICKETS: "S2",
}
# H10: one ticket may count once on each of these at the same time.
CONVERSATION_METERS = frozenset({HELPDESK_TICKETS, VOICE_TICKETS, SMS_TICKETS})

Covers = dict[str, list[datetime]]  # meter -> merge instants that brought a counted unit in


def evaluate_tickets(events: Iterable[Event], *, as_of: datetime) -> list[Outcome]:
    """Outcomes for every ticket of a merge family, sorted by (subject, meter, unit)."""
    require_aware(as_of)
    ticket_events = canonical(event for event in events if event.type in TICKET_EVENT_TYPES)
    merges = find_merges(ticket_events)
    timelines = route(ticket_events, merges)
    carried = _carried(timelines, merges)
    segments = {
        ticket: _meter_segments(timeline, carried[ticket]) for ticket, timeline in timelines.items()
    }
    covers = _covers(segments, merges)
    merged = involved(merges)
    outcomes: list[Outcome] = []
    for ticket in sorted(timelines):
        found = _ticket_outcomes(ticket, segments[ticket], covers[ticket], as_of)
        outcomes += _cite_shared_rules(found, ticket in merged)
    return sorted(outcomes, key=lambda outcome: (outcome.subject, outcome.meter, outcome.unit))


def _carried(
    timelines: dict[str, list[Event]], merges: dict[str, Merge]
) -> defaultdict[str, list[tuple[datetime, Event]]]:
    """M1: the past each survivor takes in (whole chains of it), with the merge instant.

    Without it a customer coming back to a merged chat after days of silence would find a
    survivor with no past, and the merge would have changed what H6 and V4 bill.
    """
    carried: defaultdict[str, list[tuple[datetime, Event]]] = defaultdict(list)
    for merge, target in handovers(merges):
        past = [*timelines[merge.source], *(e for t, e in carried[merge.source] if t < merge.at)]
        carried[target] += [(merge.at, event) for event in past]
    return carried


def _meter_segments(timeline: Sequence[Event], carried: Carried) -> dict[str, list[Segment]]:
    # Helpdesk always answers; the other meters only when the ticket has their events.
    found = {
        HELPDESK_TICKETS: helpdesk_segments(timeline, carried),
        AUTOMATED_INTERACTIONS: automation_segments(timeline),
        VOICE_TICKETS: voice_segments(timeline, carried),
        SMS_TICKETS: sms_segments(timeline),
    }
    return {meter: segments for meter, segments in found.items() if segments}


def _covers(
    segments: dict[str, dict[str, list[Segment]]], merges: dict[str, Merge]
) -> defaultdict[str, Covers]:
    """M1: for each ticket and meter, the merges that brought in an already counted unit."""
    covers: defaultdict[str, Covers] = defaultdict(lambda: defaultdict(list))
    # In merge order, so that a chain A->B->C hands A's unit on to C through B.
    for merge, target in handovers(merges):
        for meter, meter_segments in segments[merge.source].items():
            held = covers[merge.source][meter]
            settled = _apply_covers(meter_segments, held, meter)
            counted = [s.billable_at for s in settled if s.billable_at is not None]
            if any(moment <= merge.at for moment in (*counted, *held)):
                covers[target][meter].append(merge.at)
    return covers


def _apply_covers(segments: list[Segment], covers: list[datetime], meter: str) -> list[Segment]:
    """Segments of a survivor whose first trigger came after a counted ticket merged in."""
    if not covers:
        return segments
    settled = []
    for index, segment in enumerate(segments):
        following = segments[index + 1].starts_at if index + 1 < len(segments) else None
        mine = [
            moment
            for moment in covers
            if (segment.starts_at is None or segment.starts_at <= moment)
            and (following is None or moment < following)
        ]
        # A trigger at or before the merge is the survivor's own: billable + billable = 2.
        if segment.billable_at is not None and any(m < segment.billable_at for m in mine):
            segment = replace(
                segment,
                billable_at=None,
                pending_until=None,
                rules=ordered_rules((ONCE_RULES[meter], "M1")),
            )
        settled.append(segment)
    return settled


def _ticket_outcomes(
    ticket: str, segments: dict[str, list[Segment]], covers: Covers, as_of: datetime
) -> list[Outcome]:
    outcomes = []
    for meter, meter_segments in segments.items():
        settled = _apply_covers(meter_segments, covers.get(meter, []), meter)
        outcomes += _meter_outcomes(ticket, meter, settled, as_of)
    return outcomes


def _meter_outcomes(
    ticket: str, meter: str, segments: list[Segment], as_of: datetime
) -> list[Outcome]:
    """The counted units of one meter, or one not_counted verdict with every reason."""
    outcomes = []
    for segment in segments:
        if segment.billable_at is None:
            continue
        status, pending_until = FINAL, None
        if segment.pending_until is not None:
            status, pending_until = window_status(segment.pending_until, as_of)
        outcomes.append(
            Outcome(
                TICKET,
                ticket,
                meter,
                segment.number,
                status,
                segment.billable_at,
                pending_until,
                segment.rules,
            )
        )
    if outcomes:
        return outcomes
    reasons = ordered_rules(rule for segment in segments for rule in segment.rules)
    return [Outcome(TICKET, ticket, meter, 0, NOT_COUNTED, None, None, reasons)]


def _cite_shared_rules(outcomes: list[Outcome], merged: bool) -> list[Outcome]:
    """Add the rules that speak about the ticket as a whole: H10 and M1."""
    counted_on = {outcome.meter for outcome in outcomes if outcome.counted}
    shared = len(counted_on & CONVERSATION_METERS) > 1
    cited = []
    for outcome in outcomes:
        extra = []
        if shared and outcome.counted and outcome.meter in CONVERSATION_METERS:
            extra.append("H10")
        if merged:
            extra.append("M1")
        rules = ordered_rules((*outcome.rules, *extra))
        # Most outcomes cite nothing more: kept as they are (a new Outcome is checked again).
        cited.append(outcome if rules == outcome.rules else replace(outcome, rules=rules))
    return cited
