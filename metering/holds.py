"""Held units: the spike guard's rows (docs/rules-engine.md, "Held units").

Re-evaluation writes a held subject's counted units as `held` instead of final or pending, as
it writes an excluded one's as `excluded`: the rules' verdict is kept and shown, no close bills
it. A hold is made by the loop detector here, at ingest (every re-evaluated batch records its
counted tickets' origins and looks for bursts from one requester or on one subject, and for
automated mail answered only by a rule), or by the daily anomaly check (billing.spike_guard),
for one meter's units of a day. It ends released (the units count again: in their own period
when it is still open, else as late usage on the next invoice) or excluded (as an accepted
ticket dispute); by itself after HOLD_DAYS.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from . import guard
from .event_store import ARRAY_OF, statement_run
from .models import SpikeGuard, SpikeGuardMode, SubjectKind, TicketOrigin, UsageHold

HOLD_DAYS = timedelta(days=14)
Subject = tuple[int, str, str]  # (account id, subject kind, subject)


def guard_settings(account_ids: Iterable[int]) -> dict[int, SpikeGuard]:
    """Each account's settings; the defaults (an unsaved row) for an account without its own."""
    ids = set(account_ids)
    found = {g.account_id: g for g in SpikeGuard.objects.filter(account_id__in=ids)}
    return {a: found.get(a) or SpikeGuard(account_id=a) for a in ids}


def active_holds(subjects: set[Subject]) -> dict[Subject, set[str]]:
    """The held meters of each subject ("" for every meter): one query per batch."""
    if not subjects:
        return {}
    # Arrays, not IN lists: a batch's 2,000 subjects made 2,000 parameters to compile.
    rows = UsageHold.objects.filter(
        account_id__any=list({a for a, _, _ in subjects}),
        subject__any=list({s for _, _, s in subjects}),
        released_at__isnull=True,
        excluded_at__isnull=True,
    ).values_list("account_id", "subject_kind", "subject", "meter")
    held: dict[Subject, set[str]] = defaultdict(set)
    for account_id, kind, subject, meter in rows:
        if (account_id, kind, subject) in subjects:
            held[(account_id, kind, subject)].add(meter)
    return held


def is_held(held: dict[Subject, set[str]], subject: Subject, meter: str) -> bool:
    meters = held.get(subject)
    return bool(meters) and ("" in meters or meter in meters)  # type: ignore[operator]


# --- the loop detector (at ingest) ------------------------------------------------------------


def loops_detect(origins: dict[int, list[guard.Origin]], *, at: datetime) -> set[Subject]:
    """Record the batch's counted tickets' origins and hold the tickets of any burst they are
    part of (guard.loop_tickets, per requester and per subject, with each account's settings)
    and any automated mail only a rule answered. Returns the tickets it held now outside
    `origins` (earlier ones of a burst): the caller queues them for re-evaluation, once."""
    if not origins:
        return set()
    _origins_record(origins)
    settings = guard_settings(origins)
    found: dict[Subject, str] = {}
    for account_id, rows in origins.items():
        rule = settings[account_id]
        if rule.mode == SpikeGuardMode.ALERT_ONLY:
            continue  # the daily check still tells them; nothing is held
        for origin in rows:
            if origin.automated_answered_by_rule:
                found[(account_id, SubjectKind.TICKET, origin.ticket)] = (
                    "Suspected loop: an automated message (Auto-Submitted) answered only by a rule."
                )
    for field in ("requester", "subject"):
        for (account_id, value), opened in _neighbours(origins, settings, field).items():
            rule = settings[account_id]
            window = timedelta(minutes=rule.loop_minutes)
            looping = guard.loop_tickets(opened, most=rule.loop_tickets, window=window)
            who = f"from {value}" if field == "requester" else f"on the subject “{value}”"
            for ticket in looping:
                found.setdefault(
                    (account_id, SubjectKind.TICKET, ticket),
                    f"Suspected loop: more than {rule.loop_tickets} tickets {who} within "
                    f"{rule.loop_minutes} minutes.",
                )
    if not found:
        return set()
    new = holds_create(found, at=at)
    in_batch = {(a, SubjectKind.TICKET, o.ticket) for a, rows in origins.items() for o in rows}
    return new - in_batch


def _origins_record(origins: dict[int, list[guard.Origin]]) -> None:
    rows = sorted(
        (a, o.ticket, o.requester, o.subject, o.first_at)
        for a, batch in origins.items()
        for o in batch
        if o.requester or o.subject
    )
    if not rows:
        return
    if connection.vendor == "postgresql":
        kinds = ("int8", "text", "text", "text", "timestamptz")
        columns = zip(*rows, strict=True)
        statement_run(
            _ORIGINS_UPSERT_PG,
            [ARRAY_OF[kind](column) for kind, column in zip(kinds, columns, strict=True)],
        )
        return
    with connection.cursor() as cursor:
        cursor.executemany(_ORIGINS_UPSERT, rows)


# Column names are ours, never input: the statements are constants.
_ORIGIN_CONFLICT = (
    " ON CONFLICT (account_id, ticket) DO UPDATE SET requester = excluded.requester, "
    "subject = excluded.subject, first_at = excluded.first_at "
    "WHERE (metering_ticket_origin.requester, metering_ticket_origin.subject, "
    "metering_ticket_origin.first_at) IS DISTINCT FROM "
    "(excluded.requester, excluded.subject, excluded.first_at)"
)
_ORIGINS_UPSERT_PG = (
    "INSERT INTO metering_ticket_origin (account_id, ticket, requester, subject, first_at) "
    "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])"
    + _ORIGIN_CONFLICT
)
_ORIGINS_UPSERT = (
    "INSERT INTO metering_ticket_origin (account_id, ticket, requester, subject, first_at) "
    "VALUES (%s, %s, %s, %s, %s)" + _ORIGIN_CONFLICT
)
_CROWDED_PG = {
    field: "SELECT w.a, w.v FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], "
    "%s::timestamptz[], %s::bigint[]) AS w(a, v, lo, hi, n) WHERE (SELECT count(*) FROM "
    "(SELECT 1 FROM metering_ticket_origin o WHERE o.account_id = w.a AND o." + field + " = w.v "
    "AND o.first_at BETWEEN w.lo AND w.hi LIMIT w.n + 1) AS within) > w.n"
    for field in ("requester", "subject")
}
_NEIGHBOURS_PG = {
    field: "SELECT o.account_id, o." + field + ", o.ticket, o.first_at "
    "FROM metering_ticket_origin o JOIN unnest(%s::bigint[], %s::text[], "
    "%s::timestamptz[], %s::timestamptz[]) AS w(a, v, lo, hi) "
    "ON o.account_id = w.a AND o." + field + " = w.v AND o.first_at BETWEEN w.lo AND w.hi"
    for field in ("requester", "subject")
}


def _neighbours(
    origins: dict[int, list[guard.Origin]], settings: dict[int, SpikeGuard], field: str
) -> dict[tuple[int, str], list[tuple[str, datetime]]]:
    """For each (account, requester or subject) of the batch, every ticket recorded for it
    within the account's window around the batch's: one query."""
    spans: dict[tuple[int, str], tuple[datetime, datetime]] = {}
    for account_id, rows in origins.items():
        if settings[account_id].mode == SpikeGuardMode.ALERT_ONLY:
            continue
        window = timedelta(minutes=settings[account_id].loop_minutes)
        for origin in rows:
            value = getattr(origin, field)
            if not value:
                continue
            low, high = spans.get((account_id, value), (origin.first_at, origin.first_at))
            spans[(account_id, value)] = (
                min(low, origin.first_at - window),
                max(high, origin.first_at + window),
            )
    if not spans:
        return {}
    found: dict[tuple[int, str], list[tuple[str, datetime]]] = defaultdict(list)
    keys = sorted(spans)
    if connection.vendor == "postgresql":
        # On the plain cursor, bound by the server: Django's spells every item of these
        # arrays out as SQL text, the loop detector's largest cost in a profile of ingest.
        # First only the keys with more than N tickets in their whole span (a window of M
        # minutes holding more than N lies within it): in steady traffic, none.
        crowded = statement_run(
            _CROWDED_PG[field],
            [*_windows(keys, spans), ARRAY_OF["int8"](settings[a].loop_tickets for a, _ in keys)],
        )
        keys = sorted((a, v) for a, v in crowded)
        if not keys:
            return {}
        for account_id, value, ticket, first_at in statement_run(
            _NEIGHBOURS_PG[field], _windows(keys, spans)
        ):
            found[(account_id, value)].append((ticket, first_at))
        return found
    condition = Q()
    for account_id, value in keys:
        low, high = spans[(account_id, value)]
        condition |= Q(account_id=account_id, first_at__range=(low, high), **{field: value})
    for account_id, value, ticket, first_at in TicketOrigin.objects.filter(condition).values_list(
        "account_id", field, "ticket", "first_at"
    ):
        found[(account_id, value)].append((ticket, first_at))
    return found


def _windows(keys, spans) -> list:
    """The (account, value, window start, window end) of each key, as four typed arrays."""
    return [
        ARRAY_OF["int8"](a for a, _ in keys),
        ARRAY_OF["text"](v for _, v in keys),
        ARRAY_OF["timestamptz"](spans[k][0] for k in keys),
        ARRAY_OF["timestamptz"](spans[k][1] for k in keys),
    ]


def holds_create(
    found: dict[Subject, str],
    *,
    at: datetime,
    meter: str = "",
    kind: str = UsageHold.Kind.LOOP,
    anomaly=None,
) -> set[Subject]:
    """Hold these subjects, each with its reason (on `meter`, "" for every meter), unless
    someone already released or excluded them: a person's decision is never overturned by a
    detector. Returns those held now (new or already). The caller re-evaluates them."""
    accounts = list({a for a, _, _ in found})
    subjects = list({s for _, _, s in found})
    decided = set(
        UsageHold.objects.filter(account_id__any=accounts, subject__any=subjects, meter=meter)
        .filter(Q(released_at__isnull=False) | Q(excluded_at__isnull=False))
        .values_list("account_id", "subject_kind", "subject")
    )
    active = set(
        UsageHold.objects.filter(
            account_id__any=accounts,
            subject__any=subjects,
            meter=meter,
            released_at__isnull=True,
            excluded_at__isnull=True,
        ).values_list("account_id", "subject_kind", "subject")
    )
    wanted = {key: why for key, why in found.items() if key not in decided | active}
    UsageHold.objects.bulk_create(
        [
            UsageHold(
                account_id=a,
                subject_kind=k,
                subject=s,
                meter=meter,
                kind=kind,
                anomaly=anomaly,
                reason=why[:300],
                held_at=at,
                release_after=at + HOLD_DAYS,
            )
            for (a, k, s), why in sorted(wanted.items())
        ],
        ignore_conflicts=True,
    )
    return set(wanted)


# --- releasing and excluding ----------------------------------------------------------------


def holds_resolve(*, holds: list[UsageHold], how: str, by: str, at: datetime) -> list[UsageHold]:
    """End these holds, `released` (the units count again) or `excluded` (the caller excludes
    the subjects: billing.spike_guard); the caller re-evaluates their subjects
    (services.holds_release). Returns the holds that were still active (the others were
    decided already)."""
    # Locked and read again: of two decisions at once (two tabs, the page and the console),
    # the second finds these holds decided and changes nothing.
    active = list(
        UsageHold.objects.select_for_update()
        .filter(pk__in=[h.pk for h in holds], released_at__isnull=True, excluded_at__isnull=True)
        .order_by("pk")
    )
    if not active:
        return []
    field = "released_at" if how == "released" else "excluded_at"
    UsageHold.objects.filter(pk__in=[h.pk for h in active]).update(**{field: at, "resolved_by": by})
    for hold in active:
        setattr(hold, field, at)
        hold.resolved_by = by
    return active
