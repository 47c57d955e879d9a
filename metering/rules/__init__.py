"""The billing rules engine (billing-rules.md sections 2-8), pure: plain values in and out.

Three subjects are evaluated, each from all of its events in any order and an `as_of`
instant: a family of tickets linked by merges, an AI conversation session, and a browser
session. `docs/rules-engine.md` records every interpretation the rule book left open.
"""

from .caps import apply_hard_cap
from .convert import evaluate_browser_session
from .resolutions import evaluate_ai_session
from .tickets import evaluate_tickets
from .types import (
    AI_SESSION,
    AUTOMATED_INTERACTIONS,
    AUTOMATED_RESOLUTIONS,
    BROWSER_SESSION,
    CONVERT_CLICKS,
    FINAL,
    HELPDESK_TICKETS,
    METERS,
    NOT_COUNTED,
    PENDING,
    RULE_IDS,
    SMS_TICKETS,
    STATUSES,
    SUBJECT_KINDS,
    TICKET,
    TICKET_METERS,
    VOICE_TICKETS,
    Event,
    Outcome,
    stored_event,
)

__all__ = [
    "AI_SESSION",
    "AUTOMATED_INTERACTIONS",
    "AUTOMATED_RESOLUTIONS",
    "BROWSER_SESSION",
    "CONVERT_CLICKS",
    "FINAL",
    "HELPDESK_TICKETS",
    "METERS",
    "NOT_COUNTED",
    "PENDING",
    "RULE_IDS",
    "SMS_TICKETS",
    "STATUSES",
    "SUBJECT_KINDS",
    "TICKET",
    "TICKET_METERS",
    "VOICE_TICKETS",
    "Event",
    "Outcome",
    "apply_hard_cap",
    "evaluate_ai_session",
    "evaluate_browser_session",
    "evaluate_tickets",
    "stored_event",
]
