"""Validation of incoming usage events against api.md's wire format (pure; no Django import).

Each event is checked on its own so that one bad event never costs the rest of its batch:
`validate_event` returns either a clean `EventIn` or an `EventError` with the field and a reason
a developer can act on.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .rules import types as t

MAX_ID = 255
# Clocks drift; an event stamped more than this ahead of our clock is a sender bug, not usage.
MAX_CLOCK_SKEW = timedelta(hours=1)

CHANNELS = frozenset(
    {
        "email",
        "chat",
        "contact_form",
        "api",
        "facebook_messenger",
        "instagram_dm",
        "whatsapp",
        "facebook_comment",
        "instagram_comment",
        "phone",
        "sms",
        "self_service",
    }
)
AUTHORS = frozenset({"customer", "agent", "rule", "ai_agent"})
DIRECTIONS = frozenset({"inbound", "outbound"})

# The fields each type must or may carry beyond the common ones, with their allowed values.
# A frozenset lists allowed strings; `bool`, `str` and `dict` name the type a value must have.
_TYPE_FIELDS: dict[str, dict[str, tuple[bool, Any]]] = {
    t.MESSAGE: {
        "public": (False, bool),
        "via_campaign": (False, bool),
        "requires_resolution": (False, bool),
    },
    t.INTERNAL_NOTE: {},
    t.FORWARD: {},
    t.TICKET_UPDATED: {"changes": (False, dict)},
    t.SELF_SERVICE: {
        "action": (True, frozenset({"track_order", "start_conversation", "portal_used"})),
        "campaign_active": (False, bool),
    },
    t.CALL: {
        "direction": (True, DIRECTIONS),
        "outcome": (
            True,
            frozenset(
                {
                    "answered",
                    "voicemail",
                    "ivr_message_only",
                    "forwarded_external",
                    "forwarded_internal",
                    "missed",
                }
            ),
        ),
    },
    t.SMS: {"direction": (True, DIRECTIONS)},
    t.AUTOMATION: {
        "feature": (
            True,
            frozenset({"flow", "order_management", "article_recommendation", "ai_agent"}),
        ),
        "outcome": (True, frozenset({"resolved", "handover", "spam"})),
    },
    t.TICKET_MERGED: {"into": (True, str)},
    t.CAMPAIGN_CLICK: {"campaign": (False, str)},
    t.AI_SESSION_EVENT: {
        "agent_kind": (
            True,
            frozenset(
                {
                    "messaging",
                    "advanced_chat",
                    "advanced_ticket",
                    "autoreply_articles",
                    "autoreply_triage",
                    "web_widget",
                }
            ),
        ),
        "action": (
            True,
            frozenset(
                {
                    "started",
                    "reply_sent",
                    "article_suggested",
                    "article_clicked",
                    "feedback",
                    "flow_completed",
                    "close_request_clicked",
                    "escalated",
                    "not_understood",
                    "user_reply",
                    "agent_public_reply",
                    "ticket_solved",
                    "evaluation",
                    "session_closed",
                }
            ),
        ),
        "via": (False, frozenset({"recommendation", "flow_step", "generative"})),
        "value": (False, frozenset({"positive", "negative"})),
        "to": (False, frozenset({"agent", "live_chat", "contact_form", "callback"})),
        "relevant": (False, bool),
        "resolved": (False, bool),
    },
}
# Common fields each type needs: ticket types need a ticket, sessions a session, and so on.
_NEEDS_CHANNEL = {t.MESSAGE, t.CALL, t.SMS}
_NEEDS_AUTHOR = {t.MESSAGE, t.SMS}
_NEEDS_SESSION = {t.CAMPAIGN_CLICK, t.AI_SESSION_EVENT}


@dataclass(frozen=True, slots=True)
class EventIn:
    """A valid event, ready to store."""

    account: str | None
    id: str
    type: str
    occurred_at: datetime
    ticket: str | None
    session: str | None
    customer: str | None
    channel: str | None
    author: str | None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventError:
    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": {"field": self.field}}


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset, as UTC; None when it is not one."""
    if not isinstance(value, str) or len(value) < 20:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.utcoffset() is None:
        return None
    return parsed.astimezone(UTC)


def _text(raw: Mapping, name: str, required: bool) -> tuple[str | None, EventError | None]:
    value = raw.get(name)
    if value is None:
        return None, EventError(name, f"'{name}' is required.") if required else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # helpdesks often use numeric ticket ids
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        return None, EventError(
            name, f"'{name}' must be a non-empty string of at most {MAX_ID} characters."
        )
    return value, None


def _choice(raw: Mapping, name: str, allowed: frozenset, required: bool):
    value = raw.get(name)
    if value is None:
        return None, EventError(name, f"'{name}' is required.") if required else None
    if value not in allowed:
        options = ", ".join(sorted(allowed))
        return None, EventError(name, f"'{name}' must be one of: {options}; got {value!r}.")
    return value, None


def validate_event(raw: Any, *, now: datetime) -> EventIn | EventError:
    """Check one event of a batch; `now` bounds how far in the future it may be stamped."""
    if not isinstance(raw, Mapping):
        return EventError("event", "Each event must be a JSON object.")
    event_id, error = _text(raw, "id", required=True)
    if error:
        return error
    kind = raw.get("type")
    if kind not in _TYPE_FIELDS:
        options = ", ".join(sorted(_TYPE_FIELDS))
        return EventError(
            "type", f"Unknown event type {kind!r}; expected one of: {options}.", "unknown_type"
        )
    occurred_at = parse_timestamp(raw.get("occurred_at"))
    if occurred_at is None:
        return EventError(
            "occurred_at",
            "'occurred_at' must be an RFC 3339 timestamp with an offset, "
            "e.g. 2026-11-01T09:30:00Z.",
        )
    if occurred_at > now + MAX_CLOCK_SKEW:
        return EventError("occurred_at", "'occurred_at' is in the future.")
    account, error = _text(raw, "account", required=False)
    if error:
        return error
    ticket, error = _text(raw, "ticket", required=kind in t.TICKET_EVENT_TYPES)
    if error:
        return error
    session, error = _text(raw, "session", required=kind in _NEEDS_SESSION)
    if error:
        return error
    customer, error = _text(raw, "customer", required=False)
    if error:
        return error
    channel, error = _choice(raw, "channel", CHANNELS, required=kind in _NEEDS_CHANNEL)
    if error:
        return error
    author, error = _choice(raw, "author", AUTHORS, required=kind in _NEEDS_AUTHOR)
    if error:
        return error
    attrs: dict[str, Any] = {}
    for name, (required, rule) in _TYPE_FIELDS[kind].items():
        value = raw.get(name)
        if value is None:
            if required:
                return EventError(name, f"'{name}' is required for a {kind} event.")
            continue
        error = _check_attr(name, value, rule)
        if error:
            return error
        attrs[name] = str(value) if rule is str else value
    if kind == t.TICKET_MERGED and attrs["into"] == ticket:
        return EventError("into", "A ticket cannot be merged into itself.")
    return EventIn(
        account=account,
        id=event_id,
        type=kind,
        occurred_at=occurred_at,
        ticket=ticket,
        session=session,
        customer=customer,
        channel=channel,
        author=author,
        attrs=attrs,
    )


def _check_attr(name: str, value: Any, rule: Any) -> EventError | None:
    if isinstance(rule, frozenset):
        if value not in rule:
            return EventError(
                name, f"'{name}' must be one of: {', '.join(sorted(rule))}; got {value!r}."
            )
    elif rule is bool:
        if not isinstance(value, bool):
            return EventError(name, f"'{name}' must be true or false.")
    elif rule is str:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
            return EventError(name, f"'{name}' must be a non-empty string.")
    elif rule is dict and not isinstance(value, dict):
        return EventError(name, f"'{name}' must be an object.")
    return None
