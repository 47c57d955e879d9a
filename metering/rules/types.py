"""Plain values shared by the rules engine: events in, outcomes out, and the names they use.

Nothing here knows about Django or the clock; the other modules of the package and the
Django code that stores their results both import these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

# Meters (billing-rules.md, section 1): the vocabulary is plans.meters, pure like this package.
# The engine's modules import these names from here: `X as X` marks them re-exported, which
# mypy's strict mode over this package asks for.
from plans.meters import AUTOMATED_INTERACTIONS as AUTOMATED_INTERACTIONS
from plans.meters import AUTOMATED_RESOLUTIONS as AUTOMATED_RESOLUTIONS
from plans.meters import CONVERT_CLICKS as CONVERT_CLICKS
from plans.meters import HELPDESK_TICKETS as HELPDESK_TICKETS
from plans.meters import METERS as METERS
from plans.meters import SMS_TICKETS as SMS_TICKETS
from plans.meters import VOICE_TICKETS as VOICE_TICKETS

# The meters a helpdesk ticket can count on; the other two belong to sessions.
TICKET_METERS = (HELPDESK_TICKETS, AUTOMATED_INTERACTIONS, VOICE_TICKETS, SMS_TICKETS)

# Outcome statuses.
FINAL = "final"
PENDING = "pending"
NOT_COUNTED = "not_counted"
STATUSES = (FINAL, PENDING, NOT_COUNTED)

# Subject kinds: what one evaluation is about.
TICKET = "ticket"
AI_SESSION = "ai_session"
BROWSER_SESSION = "browser_session"
SUBJECT_KINDS = (TICKET, AI_SESSION, BROWSER_SESSION)

# Event types (api.md, "Usage events").
MESSAGE = "message"
INTERNAL_NOTE = "internal_note"
FORWARD = "forward"
TICKET_UPDATED = "ticket_updated"
SELF_SERVICE = "self_service"
CALL = "call"
SMS = "sms"
AUTOMATION = "automation"
TICKET_MERGED = "ticket_merged"
CAMPAIGN_CLICK = "campaign_click"
AI_SESSION_EVENT = "ai_session"
TICKET_EVENT_TYPES = frozenset(
    {
        MESSAGE,
        INTERNAL_NOTE,
        FORWARD,
        TICKET_UPDATED,
        SELF_SERVICE,
        CALL,
        SMS,
        AUTOMATION,
        TICKET_MERGED,
    }
)
EVENT_TYPES = TICKET_EVENT_TYPES | {CAMPAIGN_CLICK, AI_SESSION_EVENT}

# Every rule id of billing-rules.md sections 2-8, in the book's order. Outcomes list their
# rules in this order so that the same decision always reads the same way.
RULE_IDS = (
    *(f"H{n}" for n in range(1, 12)),
    *(f"V{n}" for n in range(1, 6)),
    "S1",
    "S2",
    "M1",
    *(f"A{n}" for n in range(1, 6)),
    "C1",
    "C2",
    *(f"Z{n}" for n in range(1, 10)),
)


@dataclass(frozen=True, slots=True)
class Event:
    """One usage event as the helpdesk sent it (api.md); `attrs` holds the type's own fields."""

    id: str
    type: str
    occurred_at: datetime
    ticket: str | None = None
    customer: str | None = None
    channel: str | None = None
    author: str | None = None
    session: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A naive datetime would compare wrongly against aware ones (or raise mid-evaluation);
        # refuse it at the door instead.
        if self.occurred_at.utcoffset() is None:
            raise ValueError(f"event {self.id!r}: occurred_at must be timezone-aware")
        if self.type not in EVENT_TYPES:
            raise ValueError(f"event {self.id!r}: unknown type {self.type!r}")

    def attr(self, name: str, default: Any = None) -> Any:
        """A type-specific field, or `default` when the sender left it out."""
        return self.attrs.get(name, default)


# Event's slots, in field order, for stored_event.
_EVENT_SLOTS = tuple(Event.__dict__[f.name] for f in fields(Event))


def stored_event(values: Sequence[Any]) -> Event:
    """An event read back from storage, its fields in Event's order (id first).

    Checked once, when it was received (metering.validation; a timestamptz column never
    holds a naive time): __post_init__'s checks are skipped here, and the frozen dataclass's
    __init__ with them, since re-evaluation builds every event of a subject again on each
    pass. The event is the same value Event(...) would give."""
    event = object.__new__(Event)
    for slot, value in zip(_EVENT_SLOTS, values, strict=True):
        slot.__set__(event, value)
    return event


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict on one unit of one meter for one subject, with the rules that decided it."""

    subject_kind: str
    subject: str
    meter: str
    unit: int
    status: str
    billable_at: datetime | None
    pending_until: datetime | None
    rules: tuple[str, ...]

    def __post_init__(self) -> None:
        # Outcomes are stored and shown to merchants as "why was this billed"; a typo in a
        # status or rule id must fail here, not on the Billing & Usage page.
        if self.subject_kind not in SUBJECT_KINDS:
            raise ValueError(f"unknown subject kind {self.subject_kind!r}")
        if self.meter not in METERS:
            raise ValueError(f"unknown meter {self.meter!r}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        unknown = [rule for rule in self.rules if rule not in RULE_IDS]
        if unknown or not self.rules:
            raise ValueError(f"an outcome cites known rule ids, got {self.rules!r}")
        if (self.status == PENDING) != (self.pending_until is not None):
            raise ValueError("pending_until is set exactly when the status is pending")
        if self.status != NOT_COUNTED and self.billable_at is None:
            raise ValueError("a counted unit has a billable_at")

    @property
    def counted(self) -> bool:
        return self.status != NOT_COUNTED
