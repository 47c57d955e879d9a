"""The usage event as OpenAPI 3.0 schema components, drawn from the tables `validation` checks
events against, so that the published schema and the ingest cannot drift apart (pure; no Django).

What OpenAPI 3.0 cannot state is said in the descriptions, and is all that a valid event may
still be refused for (listed in `rejected`, the rest of its batch kept): an `occurred_at` outside
the accepted window (it moves with our clock), an `account` the key does not reach, `into`
equal to `ticket`, and the keys of `changes` (1 to 255 characters, no control character).
"""

from typing import Any

from . import validation
from .rules import types as t

EVENT = "UsageEvent"  # the component a batch's events are
_ID = "UsageEventId"
_PREFIX = "#/components/schemas/"

# No C0 or C1 control character (lone surrogates are refused too: no regex of JSON Schema's
# dialect can name them, and well-formed UTF-8 cannot carry them).
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
# Free text in `changes` may hold tabs and line breaks.
_NO_CONTROL_BUT_LINES = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
# RFC 3339 as the ingest reads it: upper-case T and Z, no leap second.
_TIMESTAMP = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?"
    "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)

_NAMES = {
    "into": "The surviving ticket's id (not `ticket` itself).",
    "campaign": "The campaign's id.",
}
_SESSION_TYPES = {t.CAMPAIGN_CLICK, t.AI_SESSION_EVENT}
_CHANNEL_TYPES = {t.MESSAGE, t.CALL, t.SMS}
_AUTHOR_TYPES = {t.MESSAGE, t.SMS}


def ref(name: str) -> dict[str, str]:
    return {"$ref": _PREFIX + name}


def components() -> dict[str, dict[str, Any]]:
    """Every component the event needs, by name; EVENT is the one to point at."""
    found: dict[str, dict[str, Any]] = {_ID: _identifier()}
    for depth in range(validation.MAX_CHANGES_DEPTH, 0, -1):  # each level names the next
        found[_changes_name(depth)] = _changes_value(depth)
    names = {
        kind: EVENT + kind.title().replace("_", "") for kind in sorted(validation._TYPE_FIELDS)
    }
    for kind, name in names.items():
        found[name] = _event_of_type(kind)
    found[EVENT] = {
        "oneOf": [ref(name) for name in names.values()],
        "discriminator": {
            "propertyName": "type",
            "mapping": {kind: _PREFIX + name for kind, name in names.items()},
        },
        "description": 'One event, by `type` (docs/api.md, "Events"). Fields its type does '
        "not name are ignored. Beyond what the schema says, an event is refused (listed in "
        "`rejected`, the rest of its batch kept) only for an `occurred_at` outside the "
        "accepted window, an `account` the key does not reach (`not_found`), `into` equal to "
        "`ticket`, or keys of `changes` that are empty, longer than 255 characters or hold a "
        "control character.",
    }
    return found


def identifier_string() -> dict[str, Any]:
    """An id or a name as a string (a ticket's, in a path)."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": validation.MAX_ID,
        "pattern": _NO_CONTROL,
    }


def _identifier() -> dict[str, Any]:
    """An id or a name: a string, or an integer kept as its decimal string; 1 to MAX_ID
    characters either way (a minus sign is one)."""
    longest = validation.MAX_ID
    return {
        "oneOf": [
            identifier_string(),
            {"type": "integer", "minimum": 1 - 10 ** (longest - 1), "maximum": 10**longest - 1},
        ],
        "description": f"A string of 1 to {longest} characters without control characters, "
        "or an integer (kept as its decimal string).",
    }


def _optional(schema: dict[str, Any], description: str) -> dict[str, Any]:
    # null reads as absent. (OpenAPI 3.0 ignores what sits beside a $ref: hence the allOf.)
    return {"allOf": [schema], "nullable": True, "description": description}


def _required(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"allOf": [schema], "description": description}


def _choice(values: frozenset[str], *, required: bool) -> dict[str, Any]:
    if required:
        return {"type": "string", "enum": sorted(values)}
    # An optional enum of OpenAPI 3.0 lists its null too.
    return {"type": "string", "enum": [*sorted(values), None], "nullable": True}


def _changes_name(depth: int) -> str:
    return f"UsageEventChangesValue{depth}"


def _changes_value(depth: int) -> dict[str, Any]:
    """A value held in `changes` by an object or a list nested `depth` levels deep."""
    kinds: list[dict[str, Any]] = [
        {
            "type": "string",
            "maxLength": validation.MAX_CHANGES_TEXT,
            "pattern": _NO_CONTROL_BUT_LINES,
        },
        {"type": "number"},
        {"type": "boolean"},
    ]
    if depth < validation.MAX_CHANGES_DEPTH:
        inner = ref(_changes_name(depth + 1))
        most = validation.MAX_CHANGES_ITEMS
        kinds.append({"type": "object", "maxProperties": most, "additionalProperties": inner})
        kinds.append({"type": "array", "maxItems": most, "items": inner})
    return {"anyOf": kinds, "nullable": True}


def _attribute(name: str, required: bool, rule: Any) -> dict[str, Any]:
    """A type's own field, from its rule in `validation`'s table."""
    if isinstance(rule, frozenset):
        return _choice(rule, required=required)
    if rule is bool:
        return {"type": "boolean", "nullable": not required}
    if rule is str:
        wrap = _required if required else _optional
        return wrap(ref(_ID), _NAMES.get(name, f"`{name}`."))
    assert rule is dict, rule
    return {
        "type": "object",
        "maxProperties": validation.MAX_CHANGES_ITEMS,
        "additionalProperties": ref(_changes_name(1)),
        "nullable": not required,
        "description": f"Free-form, nested at most {validation.MAX_CHANGES_DEPTH} levels (this "
        f"object is one), {validation.MAX_CHANGES_ITEMS} entries in all, keys of 1 to "
        f"{validation.MAX_ID} characters without control characters.",
    }


def _event_of_type(kind: str) -> dict[str, Any]:
    """One event type: the common fields, then the type's own."""

    def name(description: str, *, required: bool) -> dict[str, Any]:
        return (_required if required else _optional)(ref(_ID), description)

    properties: dict[str, Any] = {
        "id": name("The sender's id for the event, unique per account.", required=True),
        # Inside an allOf, so that drf-spectacular's enum hook does not make a component of
        # each type's one-value list.
        "type": {"allOf": [{"type": "string", "enum": [kind]}]},
        "occurred_at": {
            "type": "string",
            "format": "date-time",
            "pattern": _TIMESTAMP,
            "maxLength": validation.MAX_TIMESTAMP,
            "description": "RFC 3339 with an offset, from 2000-01-01T00:00:00Z to one hour "
            "ahead of our clock.",
        },
        "account": name(
            "The account's slug: required with a partner key, optional with an account key.",
            required=False,
        ),
        "ticket": name("The helpdesk's ticket id.", required=kind in t.TICKET_EVENT_TYPES),
        "session": name("The session's id.", required=kind in _SESSION_TYPES),
        "customer": name("The helpdesk's customer id.", required=False),
        "channel": _choice(validation.CHANNELS, required=kind in _CHANNEL_TYPES),
        "author": _choice(validation.AUTHORS, required=kind in _AUTHOR_TYPES),
    }
    required = [field for field, schema in properties.items() if not schema.get("nullable")]
    for field, (needed, rule) in validation._TYPE_FIELDS[kind].items():
        properties[field] = _attribute(field, needed, rule)
        if needed:
            required.append(field)
    return {"type": "object", "required": required, "properties": properties}
