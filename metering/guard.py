"""The spike guard's decisions, pure (no Django): which tickets look like a loop, and whether a
day's usage is an anomaly against the same weekdays (docs/rules-engine.md, "Held units").

The services around them (metering.holds, billing.spike_guard) read and write the rows.
"""

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from .rules.types import MESSAGE, Event

# Prefixes mail clients and auto-responders put before a subject ("Re: Re: Fwd: Order 12").
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|tr|rv)\s*(\[\d+\])?\s*:\s*)+", re.I)
SUBJECT_MOST = 200
# Anomalies: at least this many same weekdays of history, at most this many looked at.
MIN_WEEKS, MAX_WEEKS = 4, 8
# Robust z-score over the same weekdays: MAD scaled to a standard deviation (normal data).
MAD_SCALE = 1.4826
MIN_Z = 3


@dataclass(frozen=True)
class Origin:
    """Who opened one ticket, about what, when, and whether only our own rule answered an
    automated message (both read from its events)."""

    ticket: str
    requester: str | None
    subject: str | None
    first_at: datetime
    automated_answered_by_rule: bool


def origin_of(ticket: str, events: Sequence[Event]) -> Origin | None:
    """The ticket's origin from its own events (sorted or not), or None without any."""
    earliest = first_inbound = None
    automated = answered_by_rule = answered_by_agent = False
    requester = None
    for e in events:  # one pass, no sort: this runs for every newly counted ticket
        if e.ticket != ticket:
            continue
        key = (e.occurred_at, e.id)
        if earliest is None or key < (earliest.occurred_at, earliest.id):
            earliest = e
        requester = requester or e.customer
        if e.type != MESSAGE:
            continue
        if e.author == "customer":
            if first_inbound is None or key < (first_inbound.occurred_at, first_inbound.id):
                first_inbound = e
            automated = automated or e.attrs.get("auto_submitted") is True
        elif e.author in ("agent", "rule") and e.attrs.get("public", True):
            answered_by_rule = answered_by_rule or e.author == "rule"
            answered_by_agent = answered_by_agent or e.author == "agent"
    if earliest is None:
        return None
    first = first_inbound or earliest
    return Origin(
        ticket=ticket,
        requester=first.customer or requester,
        subject=normalized_subject(first.attrs.get("subject")),
        first_at=earliest.occurred_at,
        automated_answered_by_rule=automated and answered_by_rule and not answered_by_agent,
    )


def normalized_subject(subject: object) -> str | None:
    """A thread's subject as a loop repeats it: without reply prefixes, case or extra blanks."""
    if not isinstance(subject, str):
        return None
    text = " ".join(_REPLY_PREFIX.sub("", subject).split()).casefold()
    return text[:SUBJECT_MOST] or None


def loop_tickets(
    opened: Iterable[tuple[str, datetime]], *, most: int, window: timedelta
) -> set[str]:
    """The tickets (of one requester, or one subject) that fall in a window of `window`
    holding more than `most` of them: every ticket of the burst, the first ones included."""
    rows = sorted(opened, key=lambda row: (row[1], row[0]))
    looping: set[str] = set()
    start = 0
    for end in range(len(rows)):
        while rows[end][1] - rows[start][1] > window:
            start += 1
        if end - start + 1 > most:
            looping.update(ticket for ticket, _ in rows[start : end + 1])
    return looping


@dataclass(frozen=True)
class Anomaly:
    observed: int
    baseline: int  # the same weekdays' median, rounded up
    spread: int  # their median absolute deviation, rounded up
    weeks: int
    excess: int  # what is held: the units over the baseline


def anomaly(
    *, observed: int, same_weekdays: Sequence[int], multiplier: int, margin: int
) -> Anomaly | None:
    """Is `observed` (one day's billable units on a meter) an anomaly against the same weekdays
    of the last weeks (newest first)? Only with at least MIN_WEEKS of them; then when it is above
    max(multiplier × baseline, baseline + margin) and more than MIN_Z robust deviations
    above the baseline, so a steady account's weekly rhythm never trips it."""
    history = list(same_weekdays)[:MAX_WEEKS]
    if len(history) < MIN_WEEKS:
        return None  # no check without history
    center = median(history)
    spread = median(abs(x - center) for x in history)
    threshold = max(multiplier * center, center + margin)
    if observed <= threshold:
        return None
    if spread and (observed - center) / (MAD_SCALE * spread) <= MIN_Z:
        return None
    baseline = math.ceil(center)
    return Anomaly(
        observed=observed,
        baseline=baseline,
        spread=math.ceil(spread),
        weeks=len(history),
        excess=observed - baseline,
    )


def heading_into_overage(*, counted: int, included: int | None, elapsed: float) -> bool:
    """Is the period in overage, or on its pace to be by its end? `counted` so far, `elapsed`
    the share of the period gone (0–1]. A meter with no allowance bills every unit."""
    if included is None:
        return True
    if counted > included:
        return True
    return elapsed > 0 and counted / elapsed > included
