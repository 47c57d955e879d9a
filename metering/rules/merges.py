"""Merges (rule M1): which ticket each event belongs to once tickets have been merged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .types import TICKET_MERGED, Event


@dataclass(frozen=True, slots=True)
class Merge:
    """`source` was merged into `into` at `at` (the `ticket_merged` event `event_id`)."""

    source: str
    into: str
    at: datetime
    event_id: str


def find_merges(events: Sequence[Event]) -> dict[str, Merge]:
    """Each merged ticket's merge, from canonically ordered events."""
    merges: dict[str, Merge] = {}
    for event in events:
        into = event.attr("into") if event.type == TICKET_MERGED else None
        if not isinstance(into, str) or event.ticket is None or into == event.ticket:
            continue
        # A merged ticket is gone: its first merge is the one that happened; a later one
        # names a ticket that no longer exists and routes like any late event.
        merges.setdefault(event.ticket, Merge(event.ticket, into, event.occurred_at, event.id))
    return merges


def owner(merges: dict[str, Merge], ticket: str, at: datetime) -> str:
    """The ticket that an event naming `ticket` at `at` applies to (chains A->B->C)."""
    seen = {ticket}
    merge = merges.get(ticket)
    # Strictly after: an event at the merge instant is still the source's own.
    while merge is not None and merge.at < at and merge.into not in seen:
        ticket = merge.into
        seen.add(ticket)
        merge = merges.get(ticket)
    return ticket


def route(events: Sequence[Event], merges: dict[str, Merge]) -> dict[str, list[Event]]:
    """Every ticket named by the events (or a merge), with the events that apply to it."""
    timelines: dict[str, list[Event]] = {}
    for merge in merges.values():
        timelines.setdefault(merge.source, [])
        timelines.setdefault(merge.into, [])
    for event in events:
        if event.ticket is None:
            raise ValueError(f"event {event.id!r}: a {event.type} event names its ticket")
        timelines.setdefault(event.ticket, [])
        timelines.setdefault(owner(merges, event.ticket, event.occurred_at), []).append(event)
    return timelines


def handovers(merges: dict[str, Merge]) -> list[tuple[Merge, str]]:
    """Merges in the order they happened (ties by event id), each with its real survivor."""
    ordered = sorted(merges.values(), key=lambda merge: (merge.at, merge.event_id))
    found = []
    for merge in ordered:
        # `into` may itself have been merged away before: follow it. A loop in the data can
        # lead back to the source, and then there is nothing to hand over.
        target = owner(merges, merge.into, merge.at)
        if target != merge.source:
            found.append((merge, target))
    return found


def involved(merges: dict[str, Merge]) -> set[str]:
    """Tickets that were merged or absorbed a merged ticket."""
    return {merge.source for merge in merges.values()} | {m.into for m in merges.values()}
