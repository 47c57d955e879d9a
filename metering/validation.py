"""Validation of incoming usage events against api.md's wire format (pure; no Django import).

Each event is checked on its own so that one bad event never costs the rest of its batch:
`validate_event` returns either a clean `EventIn` or an `EventError` with the field and a reason
a developer can act on. Everything it lets through can be stored (PostgreSQL refuses NUL bytes
and lone surrogates, and a CharField its 256th character) and evaluated (the rules engine does
calendar maths on `occurred_at`), so a bad event is refused here rather than failing its
whole batch at the database or, later, every re-evaluation of its ticket.
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from math import isfinite
from typing import Any, NamedTuple, TypeGuard

from accounts.input_rules import EARLIEST, MAX_CLOCK_SKEW

from . import json_codec
from .rules import types as t

# Every string field is capped: ids and names at the width of their column.
MAX_ID = 255
MAX_TIMESTAMP = 64
# The window `occurred_at` must fall in is the portal's dates window, narrowed to
# MAX_CLOCK_SKEW ahead of our clock (accounts.input_rules.EVENT_TIME). Ingest narrows it again
# per account: not before its first subscription (metering.services.events_ingest).

# `changes` is free-form but bounded: nesting levels (the object itself is 1), keys and list
# items over all levels, and characters of any string in it.
MAX_CHANGES_DEPTH = 4
MAX_CHANGES_ITEMS = 100
MAX_CHANGES_TEXT = 1000

# C0 and C1 control characters (NUL among them) and lone surrogates: refused in ids and names.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# A valid id or name, in one match (the hot path: every event has several).
_IDENTIFIER = re.compile(f"[^\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]{{1,{MAX_ID}}}")
# Free text inside `changes` may hold tabs and line breaks.
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

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
        # The spike guard's clues (metering.guard): an inbound mail an auto-responder sent
        # (RFC 3834's Auto-Submitted header, or the helpdesk's own guess), and its subject.
        "auto_submitted": (False, bool),
        "subject": (False, str),
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
_TYPES = frozenset(_TYPE_FIELDS)


class EventIn(NamedTuple):
    """A valid event, ready to store. (A named tuple: made a thousand times a batch, it costs
    a third of a frozen dataclass, and is as immutable.)"""

    account: str | None
    id: str
    type: str
    occurred_at: datetime
    ticket: str | None
    session: str | None
    customer: str | None
    channel: str | None
    author: str | None
    attrs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventError:
    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": {"field": self.field}}


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An event of a batch that the body parser could not follow (see `parse_batch`)."""

    reason: str


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset, as UTC; None when it is not one."""
    if not isinstance(value, str) or not 20 <= len(value) <= MAX_TIMESTAMP:
        return None
    if _CONTROL.search(value):  # fromisoformat skips a NUL here and there
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.utcoffset() is None:
            return None
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        return None


def _kind_of(value: Any) -> str:
    """What a JSON value is, in the words of an error message (never the value: it may be huge,
    deep, or hold characters a response cannot carry)."""
    if isinstance(value, str):
        shown = repr(value[:40])  # repr escapes NUL and lone surrogates
        cut = len(value) > 40 or len(shown) > 42
        return f"the string {shown[:40] + '…' if cut else shown}"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return "null" if value is None else type(value).__name__


def identifier(name: str, value: Any) -> tuple[str | None, EventError | None]:
    """An id or a name: a string (or an integer, as helpdesks number tickets) of 1 to MAX_ID
    characters with no control character or lone surrogate."""
    if type(value) is int:
        value = str(value)
    if type(value) is str and _IDENTIFIER.fullmatch(value):
        return value, None
    if not isinstance(value, str):
        reason = f"must be a string, not {_kind_of(value)}."
    elif not value:
        reason = "must not be empty."
    elif len(value) > MAX_ID:
        reason = f"is {len(value)} characters long; at most {MAX_ID} are accepted."
    else:
        reason = "holds a control character (NUL, …) or a lone surrogate."
    return None, EventError(name, f"'{name}' {reason}")


def _text(raw: Mapping, name: str, required: bool) -> tuple[str | None, EventError | None]:
    value = raw.get(name)
    if value is None:
        return None, EventError(name, f"'{name}' is required.") if required else None
    if type(value) is str and _IDENTIFIER.fullmatch(value):  # the common case, inline
        return value, None
    return identifier(name, value)


def _choice(raw: Mapping, name: str, allowed: frozenset, required: bool):
    value = raw.get(name)
    if value is None:
        return None, EventError(name, f"'{name}' is required.") if required else None
    return (value, None) if _allowed(value, allowed) else (None, _not_allowed(name, value, allowed))


def _allowed(value: Any, allowed: frozenset) -> TypeGuard[str]:
    # A list or an object is unhashable: test the type before membership.
    return isinstance(value, str) and value in allowed


def _not_allowed(name: str, value: Any, allowed: frozenset) -> EventError:
    options = ", ".join(sorted(allowed))
    return EventError(name, f"'{name}' must be one of: {options}; got {_kind_of(value)}.")


def validate_events(raw_events: Iterable[Any], *, now: datetime) -> list[EventIn | EventError]:
    """Check each event of a batch alone (`validate_event`), in one pass."""
    latest = now + MAX_CLOCK_SKEW
    checked: list[EventIn | EventError] = []
    for raw in raw_events:
        event = _valid_event(raw, latest) if type(raw) is dict else None
        checked.append(event or _checked_field_by_field(raw, now=now))
    return checked


def validate_event(raw: Any, *, now: datetime) -> EventIn | EventError:
    """Check one event of a batch; `now` bounds how far in the future it may be stamped."""
    event = _valid_event(raw, now + MAX_CLOCK_SKEW) if type(raw) is dict else None
    return event or _checked_field_by_field(raw, now=now)


# What each type needs beyond the common fields, for the one-pass check: (ticket required,
# session required, channel required, author required, its own fields as (name, required,
# rule)), in _TYPE_FIELDS' order so that attrs come out as the field-by-field check makes them.
_PLANS = {
    kind: (
        kind in t.TICKET_EVENT_TYPES,
        kind in _NEEDS_SESSION,
        kind in _NEEDS_CHANNEL,
        kind in _NEEDS_AUTHOR,
        tuple((name, required, rule) for name, (required, rule) in fields.items()),
    )
    for kind, fields in _TYPE_FIELDS.items()
}


def _plain(value: Any) -> TypeGuard[str]:
    """An id or a name the one-pass check may take as it is: a printable string of 1 to MAX_ID
    characters. Printable excludes every control character and lone surrogate (and a few
    characters `identifier` accepts, such as a no-break space: those go the long way)."""
    return type(value) is str and value.isprintable() and 0 < len(value) <= MAX_ID


def _valid_event(raw: dict, latest: datetime) -> EventIn | None:
    """The event, when it is valid in its usual form; None to have `_checked_field_by_field`
    decide (and name the first problem).

    The hot path: each field read once, no error words built. It accepts only what the
    field-by-field check accepts, and makes the same EventIn of it (`test_validation_fast`
    compares the two); anything unusual (an integer id, a timestamp in another form, a name
    with a no-break space) is left to the other.
    """
    get = raw.get
    event_id, kind, stamp = get("id"), get("type"), get("occurred_at")
    if not _plain(event_id) or type(kind) is not str or type(stamp) is not str:
        return None
    plan = _PLANS.get(kind)
    if plan is None or not (20 <= len(stamp) <= MAX_TIMESTAMP and stamp.isprintable()):
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
        if parsed.utcoffset() is None:
            return None
        occurred_at = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if not EARLIEST <= occurred_at <= latest:
        return None
    needs_ticket, needs_session, needs_channel, needs_author, own_fields = plan
    # Each common field: absent (None) where its type may go without it, or plain / allowed.
    account, ticket, session = get("account"), get("ticket"), get("session")
    customer, channel, author = get("customer"), get("channel"), get("author")
    if account is not None and not _plain(account):
        return None
    if customer is not None and not _plain(customer):
        return None
    if (needs_ticket if ticket is None else not _plain(ticket)) or (
        needs_session if session is None else not _plain(session)
    ):
        return None
    if (needs_channel if channel is None else not _allowed(channel, CHANNELS)) or (
        needs_author if author is None else not _allowed(author, AUTHORS)
    ):
        return None
    attrs: dict[str, Any] = {}
    for name, required, rule in own_fields:
        value = get(name)
        if value is None:
            if required:
                return None
            continue
        if rule is bool:
            if type(value) is not bool:
                return None
        elif rule is str:
            if not _plain(value):
                return None
        elif rule is dict:
            if _free_form_error(name, value) is not None:
                return None
        elif not _allowed(value, rule):
            return None
        attrs[name] = value
    if kind == t.TICKET_MERGED and attrs["into"] == ticket:
        return None
    return EventIn(
        account, event_id, kind, occurred_at, ticket, session, customer, channel, author, attrs
    )


def _checked_field_by_field(raw: Any, *, now: datetime) -> EventIn | EventError:
    """The event, or the first reason it cannot be stored, field by field."""
    if not isinstance(raw, Mapping):
        if isinstance(raw, Unreadable):
            return EventError("event", raw.reason)
        return EventError("event", "Each event must be a JSON object.")
    event_id, error = _text(raw, "id", required=True)
    if error:
        return error
    assert event_id is not None  # required: a missing id came back as the error
    kind = raw.get("type")
    if not _allowed(kind, _TYPES):
        options = ", ".join(sorted(_TYPE_FIELDS))
        return EventError(
            "type",
            f"Unknown event type: {_kind_of(kind)}; expected one of: {options}.",
            "unknown_type",
        )
    occurred_at = parse_timestamp(raw.get("occurred_at"))
    if occurred_at is None:
        return EventError(
            "occurred_at",
            "'occurred_at' must be an RFC 3339 timestamp with an offset, "
            "e.g. 2026-11-01T09:30:00Z.",
        )
    if occurred_at < EARLIEST:
        return EventError("occurred_at", f"'occurred_at' is before {EARLIEST:%Y-%m-%d}.")
    if occurred_at > now + MAX_CLOCK_SKEW:
        return EventError(
            "occurred_at", "'occurred_at' is in the future (more than an hour ahead of our clock)."
        )
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
        value, error = _check_attr(name, value, rule)
        if error:
            return error
        attrs[name] = value
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


def _check_attr(name: str, value: Any, rule: Any) -> tuple[Any, EventError | None]:
    """The type's own field, as it will be stored, or why it cannot be."""
    if isinstance(rule, frozenset):
        if not _allowed(value, rule):
            return None, _not_allowed(name, value, rule)
    elif rule is bool:
        if not isinstance(value, bool):
            return None, EventError(name, f"'{name}' must be true or false, not {_kind_of(value)}.")
    elif rule is str:
        return identifier(name, value)
    elif rule is dict:
        error = _free_form_error(name, value)
        if error:
            return None, error
    return value, None


def _free_form_error(name: str, value: Any) -> EventError | None:
    """An object whose content is the sender's (`changes`): bounded in depth, size and text,
    and free of what PostgreSQL's jsonb refuses (NUL, lone surrogates, infinite numbers)."""
    if not isinstance(value, Mapping):
        return EventError(name, f"'{name}' must be an object, not {_kind_of(value)}.")
    items = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # a loop, not recursion: the nesting is the sender's
        node, depth = stack.pop()
        for key, child in node.items() if isinstance(node, Mapping) else enumerate(node):
            items += 1
            if items > MAX_CHANGES_ITEMS:
                return EventError(name, f"'{name}' holds more than {MAX_CHANGES_ITEMS} entries.")
            if isinstance(key, str) and (len(key) > MAX_ID or _CONTROL.search(key)):
                return EventError(
                    name,
                    f"'{name}' has a key longer than {MAX_ID} characters or holding a control "
                    "character or a lone surrogate.",
                )
            if isinstance(child, Mapping | list):
                if depth == MAX_CHANGES_DEPTH:
                    return EventError(
                        name, f"'{name}' is nested more than {MAX_CHANGES_DEPTH} levels deep."
                    )
                stack.append((child, depth + 1))
            elif isinstance(child, str):
                if len(child) > MAX_CHANGES_TEXT or _CONTROL_IN_TEXT.search(child):
                    return EventError(
                        name,
                        f"'{name}' holds a string longer than {MAX_CHANGES_TEXT} characters or "
                        "with a control character (other than tab and line breaks) or a lone "
                        "surrogate.",
                    )
            elif isinstance(child, float) and not isfinite(child):
                return EventError(name, f"'{name}' holds a number out of range.")
    return None


# --- The request body ---------------------------------------------------------------------

# A JSON string (escapes included) or a bracket: enough to find where a value ends.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SPACE = re.compile(r"[ \t\n\r]*")
_TOO_DEEP = (
    "The event is nested too deeply to read; "
    f"'changes' may nest at most {MAX_CHANGES_DEPTH} levels."
)


def _skip_space(text: str, at: int) -> int:
    """Where the whitespace from `at` ends (`at` itself when there is none)."""
    # `*` matches the empty string too, so match() never gives None here.
    match = _SPACE.match(text, at)
    assert match is not None
    return match.end()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value.")


def parse_json(text: str) -> Any:
    """A JSON document; NaN and Infinity are refused (ValueError), and so is nesting deeper than
    Python's parser follows (RecursionError). Read by orjson where it agrees (`json_codec`)."""
    return json_codec.loads(text)


def parse_batch(text: str) -> Any:
    """A request body that should read `{"events": [...]}`.

    Nesting too deep for the parser costs only the event that holds it: that event becomes
    `Unreadable` (rejected by `validate_event`) and the rest of the batch is read. The fast
    path is the plain parser; the event-by-event one runs only after it gave up.
    """
    try:
        return parse_json(text)
    except RecursionError:
        if not text.lstrip(" \t\n\r").startswith("{"):
            raise  # not a batch at all
        return _parse_batch_by_event(text)


def _parse_batch_by_event(text: str) -> dict[str, Any]:
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    body: dict[str, Any] = {}
    at = _expect(text, 0, "{")
    while True:
        if not text.startswith('"', at):
            raise ValueError(f"Expecting a property name at char {at}.")
        # The decoder's own string scanner (C-accelerated): public in the module since Python 2,
        # but missing from typeshed.
        key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        at = _expect(text, at, ":")
        if key == "events" and text.startswith("[", at):
            body[key], at = _events_by_event(text, at + 1, decoder)
        else:
            body[key], at = decoder.raw_decode(text, at)  # too deep elsewhere: RecursionError
        at = _skip_space(text, at)
        if text.startswith("}", at):
            break
        at = _expect(text, at, ",")
    if text[at + 1 :].strip(" \t\n\r"):
        raise ValueError(f"Extra data at char {at + 1}.")
    return body


def _events_by_event(text: str, at: int, decoder: json.JSONDecoder) -> tuple[list, int]:
    events: list[Any] = []
    at = _skip_space(text, at)
    if text.startswith("]", at):
        return events, at + 1
    while True:
        try:
            event, at = decoder.raw_decode(text, at)
        except RecursionError:
            event, at = Unreadable(_TOO_DEEP), _end_of_value(text, at)
        events.append(event)
        at = _skip_space(text, at)
        if text.startswith("]", at):
            return events, at + 1
        at = _expect(text, at, ",")


def _end_of_value(text: str, at: int) -> int:
    """Where the object or list starting at `at` ends, counting brackets outside strings."""
    depth = 0
    for match in _TOKENS.finditer(text, at):
        bracket = match.group()
        if bracket in ("{", "["):
            depth += 1
        elif bracket in ("}", "]"):
            depth -= 1
            if depth == 0:
                return match.end()
    raise ValueError(f"Unterminated value at char {at}.")


def _expect(text: str, at: int, char: str) -> int:
    at = _skip_space(text, at)
    if not text.startswith(char, at):
        raise ValueError(f"Expecting {char!r} at char {at}.")
    return _skip_space(text, at + 1)
