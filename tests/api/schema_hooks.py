"""What the API's schema cannot say, told to Schemathesis; imported by test_schema_fuzz.py (which
`make test` and `make fuzz-api` run). docs/api.md, "The schema under fuzzing".

OpenAPI 3.0 cannot state a few rules the API keeps (each is in the schema's descriptions): an
event's time within a window that moves with our clock, for an account the key reaches, a merged
ticket other than itself, the keys of an event's `changes` and their number; a migrated
`period_start` up to now; an add-on named once per new account; a webhook host that is public
(no private address, nothing under localhost), a name of at most 253 characters; hidden
characters outside the BMP. A request
generated as valid is brought within those rules, and only those, before it is sent; a request
generated as invalid is sent as it is.

And one check: a batch of events keeps its valid events (202) and lists each invalid one in
`rejected`, so for POST /events a 202 that rejects something is the refusal
`negative_data_rejection` looks for (schemathesis.toml turns that check off there).
"""

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from urllib.parse import urlsplit

import schemathesis
from schemathesis.specs.openapi.checks import negative_data_rejection

from accounts.input_rules import EARLIEST
from accounts.tax_identity import US_STATES, vat_id_problems
from accounts.vat import vat_id_compact
from outbox.addresses import is_public

# The real account the valid events name (test_schema_fuzz.py's `real_objects`).
ACCOUNT = "shop"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_KEY = 255
MAX_CHANGES = 100
_PORT = re.compile(":[0-9]*$")
MAX_HOST = 253
_ZIP = re.compile(r"^\d{5}(-\d{4})?\Z")


def _is_positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.hook("map_case").apply_to(operation_id="events_ingest")
def events_within_unstated_rules(context, case):
    """Each event of a valid batch: stamped within the last hour (in the offset it was
    generated with), for the real account, merged into another ticket, `changes` keys kept
    to 1-255 characters without control characters."""
    if not _is_positive(case) or not isinstance(case.body, dict):
        return case
    now = datetime.now(UTC)
    for index, event in enumerate(case.body.get("events") or []):
        if not isinstance(event, dict):
            continue
        stamped = now - timedelta(seconds=index)
        try:
            offset = datetime.fromisoformat(event["occurred_at"]).tzinfo
        except (KeyError, TypeError, ValueError, OverflowError):
            offset = UTC
        event["occurred_at"] = stamped.astimezone(offset).isoformat()
        event["account"] = ACCOUNT
        if event.get("into") is not None and str(event["into"]) == str(event.get("ticket")):
            event["into"] = f"{event['into']}-kept"[-MAX_KEY:]
        if isinstance(event.get("changes"), dict):
            event["changes"] = _within_changes_rules(event["changes"], [MAX_CHANGES])
    return case


def _within_changes_rules(value, left: list[int]):
    """`changes` with its keys of 1-255 characters without control characters, and no more
    than MAX_CHANGES keys and list items over all its levels (`left` counts them down)."""
    if isinstance(value, dict):
        kept = {}
        for key, child in value.items():
            if left[0] and len(key) <= MAX_KEY and not _CONTROL.search(key):
                left[0] -= 1
                kept[key] = _within_changes_rules(child, left)
        return kept
    if isinstance(value, list):
        kept_items = []
        for child in value:
            if left[0]:
                left[0] -= 1
                kept_items.append(_within_changes_rules(child, left))
        return kept_items
    return value


@schemathesis.hook("map_case").apply_to(operation_id="accounts_create")
def accounts_within_unstated_rules(context, case):
    """A new account takes each add-on once (a second one is a 400 `duplicate_addon`), and a
    migrated cycle's `period_start` from 2000 to now (a window that moves with our clock)."""
    if not _is_positive(case) or not isinstance(case.body, dict):
        return case
    if case.body.get("addons"):
        seen: set[str] = set()
        kept = []
        for choice in case.body["addons"]:
            if choice["addon"] not in seen:
                seen.add(choice["addon"])
                kept.append(choice)
        case.body["addons"] = kept
    if case.body.get("period_start") is not None:
        case.body["period_start"] = _within(case.body["period_start"], EARLIEST, timedelta(0))
    _plain_text(case.body, ("name", "company", "vat_id"))
    _tax_identity_within_unstated_rules(case.body)
    return case


@schemathesis.hook("map_case").apply_to(operation_id="accounts_details_update")
def details_within_unstated_rules(context, case):
    """Billing details, as a partner changes them: hidden characters beyond the BMP taken out,
    and the tax identity made whole (see below)."""
    if not _is_positive(case) or not isinstance(case.body, dict):
        return case
    _plain_text(case.body, ("company", "address_line1", "address_line2", "postal_code", "city"))
    _plain_text(case.body, ("vat_id",))
    _tax_identity_within_unstated_rules(case.body, whole=True)
    return case


def _tax_identity_within_unstated_rules(body: dict, *, whole: bool = False) -> None:
    """The rules between fields (accounts.tax_identity): a US state exactly with country US,
    a US ZIP of 5 digits or ZIP+4, an EU VAT id with its country's prefix and check digits
    (a drawn one is dropped). `whole`: a PATCH meets what earlier cases stored, so the country,
    state, ZIP and VAT id are all sent, each consistent with the others."""
    if not whole and not any(k in body for k in ("country", "us_state", "vat_id")):
        return
    country = body.get("country") if isinstance(body.get("country"), str) else ""
    body["country"] = country
    if country == "US":
        if body.get("us_state") not in US_STATES:
            body["us_state"] = "WA"
        if whole or "postal_code" in body:
            zip_code = body.get("postal_code")
            if not (isinstance(zip_code, str) and _ZIP.match(zip_code)):
                body["postal_code"] = "98101"
    else:
        body["us_state"] = ""
    vat_id = body.get("vat_id") if isinstance(body.get("vat_id"), str) else ""
    if vat_id_problems(vat_id=vat_id_compact(vat_id), country=country):
        vat_id = ""
    if whole or "vat_id" in body:
        body["vat_id"] = vat_id


def _plain_text(body: dict, fields) -> None:
    """The text fields' hidden characters beyond the BMP (tags U+E0001-E007F, a few format
    controls) taken out: the schema's pattern names those of the BMP only (accounts.api_schema)."""
    for name in fields:
        if isinstance(body.get(name), str):
            kept = "".join(
                c for c in body[name] if ord(c) <= 0xFFFF or unicodedata.category(c) != "Cf"
            )
            body[name] = kept if kept.strip() or not body[name] else kept + "x"


@schemathesis.hook("map_case").apply_to(operation_id="webhook_endpoints_create")
def endpoints_within_unstated_rules(context, case):
    """An endpoint's host must be public (a generated 10.0.0.7 or [fe80::1] becomes 8.8.8.8, a
    name under localhost hooks.example), a name at most 253 characters (leading labels
    dropped)."""
    if not _is_positive(case) or not isinstance(case.body, dict):
        return case
    _plain_text(case.body, ("description",))
    url = case.body.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or not parts.hostname:
        return case
    host, port = parts.netloc, _PORT.search(parts.netloc)
    host = host[: port.start()] if port else host
    if _is_address(parts.hostname):
        if not is_public(parts.hostname):
            host = "8.8.8.8"
    elif parts.hostname.rstrip(".") == "localhost" or parts.hostname.endswith(".localhost"):
        host = "hooks.example"
    else:
        labels = host.split(".")
        while len(".".join(labels)) > MAX_HOST:
            labels.pop(0)
        host = ".".join(labels)
    case.body["url"] = parts._replace(netloc=host + (port.group() if port else "")).geturl()
    return case


def _is_address(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _within(stamp: str, earliest: datetime, ahead: timedelta) -> str:
    """`stamp`, or an instant in [earliest, now + ahead] in its offset when it is outside."""
    try:
        parsed = datetime.fromisoformat(stamp)
    except (TypeError, ValueError, OverflowError):
        return stamp
    now = datetime.now(UTC)
    if earliest <= parsed <= now + ahead:
        return stamp
    return (now - timedelta(days=3)).astimezone(parsed.tzinfo or UTC).isoformat()


@schemathesis.check
def events_rejected_in_band(ctx, response, case):
    """POST /events: a batch the schema forbids is refused (4xx), or its invalid events are
    listed in `rejected` of a 202 that keeps the rest."""
    if case.operation.definition.raw.get("operationId") != "events_ingest":
        return None
    if response.status_code == 202 and response.json().get("rejected"):
        return None
    return negative_data_rejection(ctx, response, case)


@schemathesis.hook("map_case").apply_to(operation_id="ticket_disputes_create")
def ticket_dispute_within_unstated_rules(context, case):
    """A ticket id with more than blanks in it; `other` comes with a comment."""
    if not _is_positive(case) or not isinstance(case.body, dict):
        return case
    if isinstance(case.body.get("ticket"), str) and not case.body["ticket"].strip():
        case.body["ticket"] = "T1"
    _comment_for_other(case.body)
    return case


@schemathesis.hook("map_case").apply_to(operation_id="ticket_disputes_bulk_create")
def bulk_dispute_within_unstated_rules(context, case):
    """A requester with more than blanks in it, or a whole range whose end follows its start;
    `other` comes with a comment."""
    if not _is_positive(case) or not isinstance(case.body, dict):
        return case
    body = case.body
    if isinstance(body.get("requester"), str) and not body["requester"].strip():
        body["requester"] = "ana@example.com"
    if ("from" in body) != ("to" in body):  # a range is whole or absent
        body.pop("from", None)
        body.pop("to", None)
    start, end = body.get("from"), body.get("to")
    if isinstance(start, str) and isinstance(end, str):
        try:
            if not datetime.fromisoformat(start) < datetime.fromisoformat(end):
                body["from"], body["to"] = "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"
        except (TypeError, ValueError, OverflowError):
            pass
    _comment_for_other(body)
    return case


def _comment_for_other(body: dict) -> None:
    if body.get("reason") == "other" and not str(body.get("comment") or "").strip():
        body["comment"] = "Not ours"
