"""What every meter family shares: the canonical order of events, the 72-hour window, and
the small value a ticket meter hands back before merges and statuses are applied."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .types import FINAL, PENDING, RULE_IDS, Event

# The one window length of the rule book (H6, V4, A1-A5, Z2-Z7).
WINDOW = timedelta(hours=72)

_RULE_ORDER = {rule: index for index, rule in enumerate(RULE_IDS)}


def canonical(events: Iterable[Event]) -> list[Event]:
    """The events sorted by (occurred_at, id), one per event id."""
    kept: dict[str, Event] = {}
    for event in events:
        # Ingest stores an id once, so two different bodies under one id are a sender's bug.
        # Keep the smallest by content rather than the first seen: arrival order must not
        # decide anything.
        other = kept.get(event.id)
        if other is None or _content_key(event) < _content_key(other):
            kept[event.id] = event
    return sorted(kept.values(), key=lambda event: (event.occurred_at, event.id))


def _content_key(event: Event) -> tuple[datetime, str]:
    fields = [
        event.type,
        event.ticket,
        event.customer,
        event.channel,
        event.author,
        event.session,
        dict(event.attrs),
    ]
    return event.occurred_at, json.dumps(fields, sort_keys=True, default=str)


def ordered_rules(rules: Iterable[str]) -> tuple[str, ...]:
    """Rule ids without repeats, in the rule book's order."""
    return tuple(sorted(set(rules), key=_RULE_ORDER.__getitem__))


def require_aware(as_of: datetime) -> None:
    """Refuse a naive `as_of`: it would not compare with the events' aware times."""
    if as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")


def window_status(pending_until: datetime, as_of: datetime) -> tuple[str, datetime | None]:
    """Status and pending_until of a unit whose cancelling window ends at `pending_until`."""
    # A5: "pending until its window closes; only then is it final". The window's last
    # instant belongs to it, so final starts there, never before.
    if as_of < pending_until:
        return PENDING, pending_until
    return FINAL, None


def quiet_end(times: Iterable[datetime]) -> datetime:
    """End of the first stretch of 72 h with none of `times` in it (sorted, at least one)."""
    end: datetime | None = None
    for moment in times:
        # Activity at exactly the window's end still belongs to the stretch ("more than 72 h
        # of inactivity" is what ends it).
        if end is not None and moment > end:
            break
        end = moment + WINDOW
    if end is None:
        raise ValueError("a quiet stretch starts after some activity")
    return end


@dataclass(frozen=True, slots=True)
class Segment:
    """One possible unit of a ticket meter: a segment (H6, V4) or the whole ticket.

    `billable_at` is None when nothing in the segment counts; `rules` then says why not.
    """

    number: int
    starts_at: datetime | None
    billable_at: datetime | None
    rules: tuple[str, ...]
    pending_until: datetime | None = None


# Events of tickets merged into a survivor, each with the merge instant from which it is
# part of the survivor's past (M1). They never trigger anything on the survivor; they only
# tell its H6/V4 clocks when the conversation was last active.
Carried = Sequence[tuple[datetime, Event]]


def with_carried(events: Sequence[Event], carried: Carried) -> Iterator[tuple[Event, list[Event]]]:
    """Each event with the carried events whose merge took effect just before it."""
    queue = sorted(carried, key=lambda item: (item[0], item[1].occurred_at, item[1].id))
    index = 0
    for event in events:
        arrived = []
        # Strictly before: an event at the merge instant still precedes the merge.
        while index < len(queue) and queue[index][0] < event.occurred_at:
            arrived.append(queue[index][1])
            index += 1
        yield event, arrived


def split_where(events: list[Event], opens: list[bool]) -> list[list[Event]]:
    """Cut `events` into runs, starting a new run at each event whose `opens` flag is set.

    When the very first event opens a run (only a carried past can make it do so), an empty
    first run stands for that past, so that the new run is numbered as the second.
    """
    if not events:
        return []
    runs: list[list[Event]] = [[]]
    for event, starts_new in zip(events, opens, strict=True):
        if starts_new:
            runs.append([])
        runs[-1].append(event)
    return runs
