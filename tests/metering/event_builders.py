"""Builders that keep the rules-engine tables readable.

Every builder takes an offset in hours from BASE (plus optional seconds, for the "72 h vs
72 h + 1 s" edges) and returns a `metering.rules.Event`. Ids are unique across a test run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from metering.rules import Event, Outcome

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# Far enough for every 72-hour window of a table to be closed.
LATER = 24 * 60.0

_ids = itertools.count(1)


def at(hours: float = 0, seconds: int = 0) -> datetime:
    return BASE + timedelta(hours=hours, seconds=seconds)


def hours_of(moment: datetime | None) -> float | None:
    """The offset of `moment` from BASE in hours, as the tables write it."""
    return None if moment is None else (moment - BASE) / HOUR


def _event(
    type_: str,
    hours: float,
    seconds: int = 0,
    *,
    id: str | None = None,
    attrs: dict[str, Any] | None = None,
    **fields: Any,
) -> Event:
    kept = {name: value for name, value in (attrs or {}).items() if value is not None}
    return Event(
        id=id or f"{type_}-{next(_ids)}",
        type=type_,
        occurred_at=at(hours, seconds),
        attrs=kept,
        **fields,
    )


def msg(
    hours: float,
    author: str = "customer",
    channel: str = "email",
    *,
    ticket: str = "T1",
    seconds: int = 0,
    public: bool | None = None,
    via_campaign: bool | None = None,
    requires_resolution: bool | None = None,
    id: str | None = None,
) -> Event:
    attrs = {
        "public": public,
        "via_campaign": via_campaign,
        "requires_resolution": requires_resolution,
    }
    return _event(
        "message",
        hours,
        seconds,
        id=id,
        ticket=ticket,
        author=author,
        channel=channel,
        attrs=attrs,
    )


def note(hours: float, *, ticket: str = "T1", seconds: int = 0) -> Event:
    return _event("internal_note", hours, seconds, ticket=ticket, author="agent")


def fwd(hours: float, author: str | None = "agent", *, ticket: str = "T1") -> Event:
    return _event("forward", hours, ticket=ticket, author=author)


def updated(hours: float, *, ticket: str = "T1", seconds: int = 0, **changes: Any) -> Event:
    return _event("ticket_updated", hours, seconds, ticket=ticket, attrs={"changes": changes})


def portal(
    hours: float, action: str, *, campaign_active: bool | None = None, ticket: str = "T1"
) -> Event:
    attrs = {"action": action, "campaign_active": campaign_active}
    return _event("self_service", hours, ticket=ticket, channel="self_service", attrs=attrs)


def call(
    hours: float,
    outcome: str = "answered",
    direction: str = "inbound",
    *,
    ticket: str = "T1",
    seconds: int = 0,
    customer: str | None = "C1",
) -> Event:
    attrs = {"direction": direction, "outcome": outcome}
    return _event(
        "call", hours, seconds, ticket=ticket, customer=customer, channel="phone", attrs=attrs
    )


def text(
    hours: float, author: str = "agent", direction: str = "outbound", *, ticket: str = "T1"
) -> Event:
    attrs = {"direction": direction}
    return _event("sms", hours, ticket=ticket, author=author, channel="sms", attrs=attrs)


def auto(
    hours: float,
    feature: str = "flow",
    outcome: str = "resolved",
    *,
    ticket: str = "T1",
    seconds: int = 0,
) -> Event:
    attrs = {"feature": feature, "outcome": outcome}
    return _event("automation", hours, seconds, ticket=ticket, attrs=attrs)


def merged(hours: float, ticket: str, into: str, *, seconds: int = 0) -> Event:
    return _event("ticket_merged", hours, seconds, ticket=ticket, attrs={"into": into})


def click(hours: float, *, session: str = "B1", campaign: str = "spring") -> Event:
    return _event("campaign_click", hours, session=session, attrs={"campaign": campaign})


def ai(
    hours: float,
    action: str,
    *,
    kind: str | None = None,
    session: str = "S1",
    seconds: int = 0,
    **attrs: Any,
) -> Event:
    """An `ai_session` event; a session names its agent kind once (usually on "started")."""
    fields = {"agent_kind": kind, "action": action, **attrs}
    return _event("ai_session", hours, seconds, session=session, attrs=fields)


Row = tuple[int, str, float | None, tuple[str, ...]]


def rows(outcomes: Iterable[Outcome], meter: str, subject: str = "T1") -> list[Row]:
    """(unit, status, billable_at in hours, rules) of one subject's outcomes on one meter."""
    return [
        (o.unit, o.status, hours_of(o.billable_at), o.rules)
        for o in outcomes
        if o.meter == meter and o.subject == subject
    ]


def counted_units(outcomes: Iterable[Outcome]) -> dict[tuple[str, str], int]:
    """Counted units per (subject, meter); subjects with none are left out."""
    totals: dict[tuple[str, str], int] = {}
    for outcome in outcomes:
        if outcome.counted:
            key = (outcome.subject, outcome.meter)
            totals[key] = totals.get(key, 0) + 1
    return totals


def not_counted(*rules: str) -> list[Row]:
    """The rows of a meter that counted nothing, for the reasons `rules`."""
    return [(0, "not_counted", None, rules)]


def final(hours: float, *rules: str, unit: int = 1) -> Row:
    return (unit, "final", hours, rules)


def pending(hours: float, *rules: str, unit: int = 1) -> Row:
    return (unit, "pending", hours, rules)
