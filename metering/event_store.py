"""The hot write paths of metering: ingest's store, the re-evaluation queue, charge rows.

On PostgreSQL, a batch of events is bound as one array per column to one statement that
inserts their keys (`metering_event_key`, ON CONFLICT DO NOTHING RETURNING), the events whose
key was new, their subjects' queue marks and their merges (`store_events`): the keys' RETURNING
tells which events were new (the rest were duplicates). Elsewhere (the SQLite demo) the ORM
does the same job more slowly.
"""

import struct
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection, transaction
from psycopg import postgres
from psycopg.types.array import ListBinaryDumper
from psycopg.types.json import JsonbBinaryLoader

from .json_codec import dumps, loads_stored
from .models import Event, SubjectKind, TicketMerge
from .rules import types
from .spans import SUBJECT, SUBJECT_KIND

_EVENT_COLUMNS = (
    "account_id",
    "event_id",
    "type",
    "occurred_at",
    "received_at",
    "ticket",
    "session",
    "customer",
    "channel",
    "author",
    "attrs",
)
EventRow = tuple  # in _EVENT_COLUMNS order; attrs as a dict
# Each column's type, to read the batch's arrays back as rows (`unnest`).
_EVENT_TYPES = (
    "int8",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
)
_UNNEST_ARRAYS = ", ".join(f"%b::{kind}[]" for kind in _EVENT_TYPES)
# attrs travels as JSON text (orjson writes it far faster than psycopg's Jsonb dumper).
_EVENT_SELECT = ", ".join(_EVENT_COLUMNS[:-1]) + ", attrs::jsonb"


def store_events(rows: list[EventRow], *, now: datetime) -> int:
    """Store the rows whose (account, event id) is new, mark their subjects for re-evaluation
    and remember the merges among them (M1); return how many were new."""
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        return _store_events_statement(rows, now)
    new = _insert_events_orm(rows)
    mark_for_reevaluation(_subjects_of(new), now=now)
    record_merges(
        (row[0], row[5], row[10]["into"], row[3]) for row in new if row[2] == types.TICKET_MERGED
    )
    return len(new)


_MARK_COLUMNS = "account_id, kind, subject, marked_at, version, claimed_version"
# Marking a subject a worker has claimed bumps its version (mark_for_reevaluation).
_MARK_UPSERT = (
    " ON CONFLICT (account_id, kind, subject) DO UPDATE "
    "SET version = metering_reevaluation.version + 1, marked_at = excluded.marked_at "
    "WHERE metering_reevaluation.claimed_at IS NOT NULL"
)


def _store_events_statement(rows: list[EventRow], now: datetime) -> int:
    # One statement, the batch bound as one array per column: no staging table to create and
    # drop per request (catalog writes each time), and psycopg's binary arrays cost the client
    # about half of COPY's text rows. The idempotency key first (the event table is
    # partitioned by month and cannot hold a uniqueness across months), then the events whose
    # key was new, then their subjects' queue marks and their merges, from the rows the event
    # insert returns: the client never reads the batch back. Keys go in key order: two batches
    # sharing event ids (a sender's retry overlapping its first try) then wait for each other
    # instead of deadlocking, as they did in any order (the chaos suite). Marks go in subject
    # order, as every writer of the queue takes them; the spans' trigger (migration 0007) runs
    # after them at the statement's end, in the same order. The column lists are constants of
    # this module, never input.
    columns = ", ".join(_EVENT_COLUMNS)
    arrays = [
        ARRAY_OF[kind](column)
        for kind, column in zip(_EVENT_TYPES, zip(*rows, strict=True), strict=True)
    ]
    arrays[-1] = ARRAY_OF["text"](dumps(attrs) for attrs in arrays[-1])
    store = (
        f"WITH e AS (SELECT * FROM unnest({_UNNEST_ARRAYS}) AS e({columns})), "
        "new AS (INSERT INTO metering_event_key (account_id, event_id, received_at) "
        'SELECT account_id, event_id, received_at FROM e ORDER BY account_id, event_id COLLATE "C" '
        "ON CONFLICT (account_id, event_id) DO NOTHING RETURNING account_id, event_id), "
        f"stored AS (INSERT INTO metering_event ({columns}) SELECT {_EVENT_SELECT} FROM e "
        "JOIN new USING (account_id, event_id) "
        "RETURNING account_id, type, ticket, session, occurred_at, attrs), "
        f"marked AS (INSERT INTO metering_reevaluation ({_MARK_COLUMNS}) "
        "SELECT account_id, kind, subject, %b, 0, 0 FROM ("
        f"SELECT DISTINCT account_id, {SUBJECT_KIND} AS kind, {SUBJECT} AS subject "
        "FROM stored) s WHERE subject IS NOT NULL "
        'ORDER BY account_id, kind COLLATE "C", subject COLLATE "C"' + _MARK_UPSERT + "), "
        'merged AS (INSERT INTO metering_ticketmerge (account_id, source, "into", merged_at) '
        "SELECT account_id, ticket, attrs->>'into', occurred_at FROM stored "
        f"WHERE type = '{types.TICKET_MERGED}' ON CONFLICT DO NOTHING) "
        "SELECT count(*) FROM stored"
    )
    [(count,)] = statement_run(store, [*arrays, now], prepare=None)
    return count


def _subjects_of(rows: Iterable[EventRow]) -> Iterable[tuple[int, str, str]]:
    """(account id, subject kind, subject) of each row, as `spans.SUBJECT_KIND` and
    `spans.SUBJECT` say in SQL."""
    for account_id, _, kind, _, _, ticket, session, *_ in rows:
        if kind == types.CAMPAIGN_CLICK:
            yield account_id, SubjectKind.BROWSER_SESSION, session
        elif kind == types.AI_SESSION_EVENT:
            yield account_id, SubjectKind.AI_SESSION, session
        else:
            yield account_id, SubjectKind.TICKET, ticket


def _typed_array(kind: str) -> tuple[type[list], type[ListBinaryDumper]]:
    """A list class that psycopg dumps as a binary array of `kind` (a PostgreSQL type name)
    without first reading every item to find their type (and every integer for its size): a
    third of the cost of binding a batch of plain lists."""
    info = postgres.types[kind]
    array = type(f"{kind}_array", (list,), {})
    attributes: dict[str, Any] = {"oid": info.array_oid, "element_oid": info.oid}
    if kind == "text":
        attributes["dump"] = _text_array_dump
    elif kind == "int8":
        attributes["dump"] = _int8_array_dump
    dumper = type(f"{kind}_array_dumper", (ListBinaryDumper,), attributes)
    return array, dumper


_LENGTH = struct.Struct("!i").pack
_NULL = _LENGTH(-1)
_ONE_DIMENSION = struct.Struct("!iiIii").pack  # dimensions, has nulls, item type, length, base
_NO_DIMENSION = struct.Struct("!iiI").pack
_INT8_ITEM = struct.Struct("!iq").pack  # its length, then its value


def _text_array_dump(dumper: ListBinaryDumper, items: list) -> bytes:
    """A flat list of str (or None) in PostgreSQL's binary array format, built in one pass:
    a quarter of the time psycopg's general dumper takes, which asks for each item's dumper
    (8 text columns of every batch of 1,000 events: about 5 ms a request). The connection
    speaks UTF-8 (Django sets it)."""
    if not items:
        return _NO_DIMENSION(0, 0, dumper.element_oid)
    parts = []
    for item in items:
        if item is None:
            parts.append(_NULL)
        else:
            data = item.encode()
            parts.append(_LENGTH(len(data)))
            parts.append(data)
    has_nulls = 1 if None in items else 0
    return _ONE_DIMENSION(1, has_nulls, dumper.element_oid, len(items), 1) + b"".join(parts)


def _int8_array_dump(dumper: ListBinaryDumper, items: list) -> bytes:
    """A flat list of int (or None) in PostgreSQL's binary array format, packed by one struct
    call: an eighth of the time of psycopg's general dumper."""
    if not items:
        return _NO_DIMENSION(0, 0, dumper.element_oid)
    count = len(items)
    if None in items:  # never in ours: item by item
        parts = [_NULL if item is None else _INT8_ITEM(8, item) for item in items]
        return _ONE_DIMENSION(1, 1, dumper.element_oid, count, 1) + b"".join(parts)
    fields = [8] * (2 * count)  # each item: its length, 8 bytes, then its value
    fields[1::2] = items
    return struct.pack(f"!iiIii{'iq' * count}", 1, 0, dumper.element_oid, count, 1, *fields)


_TYPED_ARRAYS = {kind: _typed_array(kind) for kind in ("int8", "text", "timestamptz")}
ARRAY_OF = {kind: array for kind, (array, _) in _TYPED_ARRAYS.items()}


class _JsonbLoader(JsonbBinaryLoader):
    """jsonb read by orjson (`json_codec.loads_stored`): an event's attrs and a charge's rules
    come back five times as fast as through the standard library's parser."""

    _loads = staticmethod(loads_stored)


def statement_run(sql: str, params: list, *, prepare: bool | None = False) -> list[tuple]:
    """Run one statement on a plain psycopg cursor of Django's connection (same transaction;
    its errors turned into Django's, so an outage or a deadlock is still OperationalError) and
    return its rows.

    Parameters are bound by the server (Django's cursors spell each array item out as SQL on
    the client; arrays made with ARRAY_OF are dumped as their type says, without a look at
    every item) and rows come back in binary through psycopg's own C loaders: Django reads a
    timestamptz through a pure-Python loader (726 ms against psycopg's 170 ms for 200k
    values). jsonb comes back parsed, and timestamps in the session's zone, which Django sets
    to UTC. Not prepared by default: re-evaluation's plans depend on the size of their arrays;
    ingest's constant statements pass `prepare=None` (psycopg prepares what repeats)."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        for array, dumper in _TYPED_ARRAYS.values():
            cursor.adapters.register_dumper(array, dumper)
        cursor.adapters.register_loader("jsonb", _JsonbLoader)
        cursor.execute(sql, params, prepare=prepare, binary=True)
        return cursor.fetchall() if cursor.description else []


def _insert_events_orm(rows: list[EventRow]) -> list[EventRow]:
    """The same on other databases (the SQLite demo): a key at a time, kept when it was new."""
    new = []
    with connection.cursor() as cursor:
        for row in rows:
            cursor.execute(
                "INSERT INTO metering_event_key (account_id, event_id, received_at) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING event_id",
                [row[0], row[1], row[4]],
            )
            if cursor.fetchone() is not None:
                new.append(row)
    Event.objects.bulk_create(
        (Event(**dict(zip(_EVENT_COLUMNS, row, strict=True))) for row in new), batch_size=500
    )
    return new


def mark_for_reevaluation(subjects: Iterable[tuple[int, str, str]], *, now: datetime) -> None:
    """Queue (account id, subject kind, subject) for re-evaluation.

    Marking a subject a worker has claimed bumps its version, so that worker keeps it queued
    for one more pass. A subject waiting unclaimed is left as it is (no row version written):
    whoever claims it reads all its events then, and its `marked_at` keeps telling how long it
    has waited. Every writer of this table takes row locks in subject order (byte order:
    Python's sort, `COLLATE "C"`), so concurrent ingests and workers cannot deadlock.
    """
    marks = sorted(set(subjects))
    if not marks:
        return
    columns, upsert = _MARK_COLUMNS, _MARK_UPSERT
    if connection.vendor == "postgresql":
        accounts, kinds, keys = zip(*marks, strict=True)
        statement_run(
            f"INSERT INTO metering_reevaluation ({columns}) SELECT a, k, s, %b, 0, 0 "
            "FROM unnest(%b::bigint[], %b::text[], %b::text[]) AS m(a, k, s) "
            'ORDER BY a, k COLLATE "C", s COLLATE "C"' + upsert,
            [now, ARRAY_OF["int8"](accounts), ARRAY_OF["text"](kinds), ARRAY_OF["text"](keys)],
            prepare=None,
        )
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO metering_reevaluation ({columns}) VALUES (%s, %s, %s, %s, 0, 0)" + upsert,
            [(a, k, s, now) for a, k, s in marks],
        )


def claim_reevaluations(limit: int, *, now: datetime, stale_before: datetime) -> list[tuple]:
    """Lease up to `limit` queued subjects: [(id, version, account id, kind, subject)].

    Claimable: not claimed, or a lease older than `stale_before` (its worker died); and not set
    aside until later than `now`. A subject re-marked while a worker evaluates it waits for that
    worker's finish (`finish_reevaluations`), which hands it back: a subject is never evaluated
    by two workers at once, and the events that came during one evaluation cost one more, not
    one each. Its own short transaction, so ingest never waits behind an evaluation.
    """
    claimable = (
        "(claimed_at IS NULL OR claimed_at < %s) "
        "AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement; an array parameter, since psycopg splits a long IN (...) list
            # on the client at a real cost.
            cursor.execute(
                "UPDATE metering_reevaluation r SET claimed_at = %s, claimed_version = version "
                f"WHERE id IN (SELECT id FROM metering_reevaluation WHERE {claimable} "
                "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING id, version, account_id, kind, subject",
                [now, stale_before, now, limit],
            )
            return cursor.fetchall()
        cursor.execute(
            f"SELECT id FROM metering_reevaluation WHERE {claimable} ORDER BY id LIMIT %s",
            [stale_before, now, limit],
        )
        ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return []
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(
            "UPDATE metering_reevaluation SET claimed_at = %s, claimed_version = version "
            f"WHERE id IN ({marks})",
            [now, *ids],
        )
        cursor.execute(
            "SELECT id, version, account_id, kind, subject FROM metering_reevaluation "
            f"WHERE id IN ({marks})",
            ids,
        )
        return cursor.fetchall()


def finish_reevaluations(claims: list[tuple], *, done: bool) -> None:
    """Done: delete the claims still at their claimed version, and hand back (unclaimed) those
    re-marked since: their new events are evaluated in another pass. Not done: hand them all
    back. In the evaluation's transaction, so the hand-back is seen with its charges."""
    if not claims:
        return
    ordered = sorted(claims, key=lambda claim: claim[2:])
    if connection.vendor == "postgresql":
        # Locked in subject order, as every writer of the queue locks it, then each row
        # deleted or handed back by whether its version is still the one claimed.
        statement_run(
            "WITH c AS (SELECT r.id, r.version = c.v AND %s AS finished "
            "FROM metering_reevaluation r "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS c(id, v) ON r.id = c.id "
            'ORDER BY r.account_id, r.kind COLLATE "C", r.subject COLLATE "C" FOR UPDATE OF r), '
            "gone AS (DELETE FROM metering_reevaluation "
            "WHERE id IN (SELECT id FROM c WHERE finished)) "
            "UPDATE metering_reevaluation SET claimed_at = NULL "
            "WHERE id IN (SELECT id FROM c WHERE NOT finished)",
            [
                done,
                ARRAY_OF["int8"](c[0] for c in ordered),
                ARRAY_OF["int8"](c[1] for c in ordered),
            ],
        )
        return
    with connection.cursor() as cursor:
        if done:
            cursor.executemany(
                "DELETE FROM metering_reevaluation WHERE id = %s AND version = %s",
                [(claim[0], claim[1]) for claim in ordered],
            )
        cursor.executemany(  # what is left of them
            "UPDATE metering_reevaluation SET claimed_at = NULL WHERE id = %s",
            [(claim[0],) for claim in ordered],
        )


def record_merges(merges: Iterable[tuple[int, str, str, datetime]]) -> None:
    """Remember (account id, source, into, merged at) so that families can be found (M1)."""
    TicketMerge.objects.bulk_create(
        [TicketMerge(account_id=a, source=s, into=i, merged_at=at) for a, s, i, at in merges],
        ignore_conflicts=True,
    )


# --- Re-evaluation's reads and writes -------------------------------------------------------

_CHARGE_COLUMNS = (
    "account_id",
    "subject_kind",
    "subject",
    "meter",
    "unit",
    "status",
    "billable_at",
    "pending_until",
    "period_start",
    "rules",
    "evaluated_at",
    "recorded_at",
)
_LOAD_COLUMNS = (
    "account_id",
    "event_id",
    "type",
    "occurred_at",
    "ticket",
    "customer",
    "channel",
    "author",
    "session",
    "attrs",
)


def load_events(
    by: str, kind: str, pairs: list[tuple[int, str]], types: tuple[str, ...], exclude: bool
) -> list[tuple]:
    """Events whose (account, ticket|session) is in `pairs`, filtered by type, in _LOAD_COLUMNS
    (attrs parsed). `kind` is the subjects' kind (their EventSpan)."""
    assert by in ("ticket", "session")
    if not pairs:
        return []
    if connection.vendor == "postgresql":
        return statement_run(*load_events_statement(by, kind, pairs, types, exclude))
    from django.db.models import Q

    condition = Q()
    grouped: dict[int, list[str]] = {}
    for account_id, key in pairs:
        grouped.setdefault(account_id, []).append(key)
    for account_id, account_keys in grouped.items():
        condition |= Q(account_id=account_id, **{f"{by}__in": account_keys})
    queryset = Event.objects.filter(condition)
    queryset = queryset.exclude(type__in=types) if exclude else queryset.filter(type__in=types)
    return list(queryset.values_list(*_LOAD_COLUMNS))


# One probe per subject of the month partitions from its span on (metering.models.EventSpan):
# the parameter of a LATERAL subquery, so PostgreSQL prunes the months before it as it runs
# (a ticket's events may lie in any month after its first, so no plan can prune them ahead).
# A subject without a span is read in every month. OFFSET 0 keeps the subquery unflattened.
_EVENTS_READ = (
    f"SELECT {', '.join('e.' + c for c in _LOAD_COLUMNS)} "
    "FROM unnest(%s::bigint[], %s::text[]) AS w(account_id, key) "
    "LEFT JOIN metering_eventspan sp "
    "ON sp.account_id = w.account_id AND sp.kind = %s AND sp.subject = w.key "
    f"CROSS JOIN LATERAL (SELECT {', '.join(_LOAD_COLUMNS)} FROM metering_event e "
    "WHERE e.account_id = w.account_id AND e.{by} = w.key "
    "AND e.received_at >= coalesce(sp.since, '-infinity') "
    "AND {negate}(e.type = ANY(%s::text[])) OFFSET 0) AS e"
)


def load_events_statement(
    by: str, kind: str, pairs: list[tuple[int, str]], types: tuple[str, ...], exclude: bool
) -> tuple[str, list]:
    """The SQL and parameters of load_events on PostgreSQL (the EXPLAIN test reads its plan)."""
    accounts, keys = zip(*pairs, strict=True)
    sql = _EVENTS_READ.format(by=by, negate="NOT " if exclude else "")
    return sql, [
        ARRAY_OF["int8"](accounts),
        ARRAY_OF["text"](keys),
        kind,
        ARRAY_OF["text"](types),
    ]


# A stored charge row as charges_read gives it: its id, then _STORED_COLUMNS.
_STORED_COLUMNS = (
    "account_id",
    "subject_kind",
    "subject",
    "meter",
    "unit",
    "status",
    "billable_at",
    "pending_until",
    "period_start",
    "rules",
    "recorded_at",
)
# One probe of the unique index per subject: it leads with (account, kind, subject), in each
# monthly partition from the subject's `since` on (rows with no period, in the default
# partition, are always read; without a `since`, every month is). A parameter of the LATERAL
# subquery, so PostgreSQL prunes the months before it as it runs. A join of the subjects'
# array with the table let the planner hash the whole table instead, 48 ms per batch of 2,000
# subjects however few rows they had, and growing with the table (508 ms with other
# statistics). OFFSET 0 keeps the LATERAL subquery from being flattened back into that join.
_CHARGES_READ = (
    f"SELECT c.id, {', '.join('c.' + column for column in _STORED_COLUMNS)} "
    "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[]) "
    "AS s(account_id, kind, subject, since) "
    "CROSS JOIN LATERAL (SELECT * FROM metering_charge c WHERE c.account_id = s.account_id "
    "AND c.subject_kind = s.kind AND c.subject = s.subject "
    "AND (c.period_start IS NULL OR c.period_start >= coalesce(s.since, '-infinity')){kept} "
    "OFFSET 0) AS c"
)
_KEPT = " AND (c.period_start IS NULL OR c.period_start >= %s)"
_CHARGES_DELETE = "DELETE FROM metering_charge WHERE id = ANY(%s::bigint[])"
# `c.id = ANY(...)` as well as the join: each partition is probed by its id index for the
# rows to change, never hashed whole.
_CHARGES_UPDATE = (
    "UPDATE metering_charge c SET status = u.status, billable_at = u.billable_at, "
    "pending_until = u.pending_until, rules = u.rules::jsonb, evaluated_at = u.evaluated_at, "
    "recorded_at = u.recorded_at FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], "
    "%s::timestamptz[], %s::text[], %s::timestamptz[], %s::timestamptz[]) "
    "AS u(id, status, billable_at, pending_until, rules, evaluated_at, recorded_at) "
    "WHERE c.id = ANY(%s::bigint[]) AND c.id = u.id"
)


Subject = tuple[int, str, str]  # (account id, kind, subject)


def charges_read_statement(
    subjects: list[Subject],
    *,
    keep_before: datetime | None,
    since: Mapping[Subject, datetime] | None = None,
) -> tuple[str, list]:
    """The SQL and parameters of charges_read on PostgreSQL (the EXPLAIN test reads its plan)."""
    sql = _CHARGES_READ.format(kept=_KEPT if keep_before else "")
    starts = ARRAY_OF["timestamptz"]((since or {}).get(subject) for subject in subjects)
    return sql, [*_subject_arrays(subjects), starts, *([keep_before] if keep_before else [])]


def _subject_arrays(subjects: Iterable[tuple[int, str, str]]) -> list[list]:
    """(account, kind, subject) triples as three typed arrays, for `unnest`."""
    accounts, kinds, keys = zip(*subjects, strict=True)
    return [ARRAY_OF["int8"](accounts), ARRAY_OF["text"](kinds), ARRAY_OF["text"](keys)]


def charges_read(
    subjects: list[Subject],
    *,
    keep_before: datetime | None = None,
    since: Mapping[Subject, datetime] | None = None,
) -> list[tuple]:
    """The subjects' charge rows: (id, *_STORED_COLUMNS), rules as a list. Rows of a period
    before `keep_before` (the archive horizon) are left out: usage there is closed for good.
    `since`, per subject, is where its rows with a period may begin: the caller knows that no
    row of the subject lies in a period starting before it (PostgreSQL then reads only those
    months; elsewhere every row is read, which finds the same)."""
    if not subjects:
        return []
    if connection.vendor == "postgresql":
        return statement_run(
            *charges_read_statement(subjects, keep_before=keep_before, since=since)
        )
    from django.db.models import Q

    from .models import Charge

    condition = Q()
    for account_id, kind, subject in subjects:
        condition |= Q(account_id=account_id, subject_kind=kind, subject=subject)
    existing = Charge.objects.filter(condition)
    if keep_before:
        existing = existing.exclude(period_start__lt=keep_before)
    return list(existing.values_list("id", *_STORED_COLUMNS))


def charges_write(existing: list[tuple], rows: list[tuple]) -> None:
    """Make the stored rows `existing` (charges_read) become `rows` (_CHARGE_COLUMNS order),
    writing only the difference: most evaluations change no verdict, and then write nothing.

    A row is matched by its unit's key and period (the unique index). A changed verdict is
    updated in place (evaluated_at then moves: it tells when the verdict last changed); a unit
    gone, or moved to another period, is deleted; a new one inserted. The per-day counters'
    triggers see exactly these statements, so they stay exact. No row lock is taken on the
    rows read: the subjects are leased to this worker (claim_reevaluations), and a caller
    re-evaluating outside the queue (an exclusion, a release) marks them too, so a worker that
    read them before it evaluates them once more."""
    stale = {(*row[1:6], row[9]): row for row in existing}
    inserts, updates = [], []
    for row in rows:
        before = stale.pop((*row[:5], row[8]), None)
        if before is None:
            inserts.append(row)
        elif (*before[6:9], before[10], before[11]) != (*row[5:8], row[9], row[11]):
            updates.append((before[0], *row[5:8], *row[9:]))
    _charges_delete([row[0] for row in stale.values()])
    _charges_update(updates)
    insert_charges(inserts)


def _charges_delete(ids: list[int]) -> None:
    if not ids:
        return
    if connection.vendor == "postgresql":
        statement_run(_CHARGES_DELETE, [ARRAY_OF["int8"](ids)])
        return
    from .models import Charge

    Charge.objects.filter(pk__in=ids).delete()


def _charges_update(rows: list[tuple]) -> None:
    """Rewrite rows whose verdict moved within its period: (id, status, billable_at,
    pending_until, rules, evaluated_at, recorded_at)."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        ids, statuses, billable, pending, rules, evaluated, recorded = zip(*rows, strict=True)
        times = ARRAY_OF["timestamptz"]
        params = [
            ARRAY_OF["int8"](ids),
            ARRAY_OF["text"](statuses),
            times(billable),
            times(pending),
            ARRAY_OF["text"](dumps(r) for r in rules),
            times(evaluated),
            times(recorded),
        ]
        statement_run(_CHARGES_UPDATE, [*params, params[0]])
        return
    from .models import Charge

    fields = ("status", "billable_at", "pending_until", "rules", "evaluated_at", "recorded_at")
    Charge.objects.bulk_update(
        [Charge(pk=row[0], **dict(zip(fields, row[1:], strict=True))) for row in rows],
        fields,
        batch_size=500,
    )


def delete_charges(
    subjects: list[tuple[int, str, str]], *, keep_before: datetime | None = None
) -> dict[tuple[int, str, str, str, int], datetime]:
    """Delete the subjects' charge rows (those of a period from `keep_before` on); return
    {(account, kind, subject, meter, unit): first recorded_at}."""
    existing = charges_read(subjects, keep_before=keep_before)
    _charges_delete([row[0] for row in existing])
    return {row[1:6]: row[11] for row in existing}


def excluded_subjects(subjects: set[tuple[int, str, str]]) -> set[tuple[int, str, str]]:
    """Which of these subjects are taken out of billing (metering.models.UsageExclusion): one
    indexed query per batch, on a table that holds only accepted disputes."""
    if not subjects:
        return set()
    if connection.vendor == "postgresql":
        # The batch as arrays: Django's cursor would spell its 2,000 names out as SQL.
        found = statement_run(
            "SELECT x.account_id, x.subject_kind, x.subject FROM metering_usageexclusion x "
            "JOIN unnest(%s::bigint[], %s::text[], %s::text[]) AS s(account_id, kind, subject) "
            "ON x.account_id = s.account_id AND x.subject_kind = s.kind AND x.subject = s.subject",
            _subject_arrays(subjects),
        )
        return set(found)
    from .models import UsageExclusion

    accounts = {account_id for account_id, _, _ in subjects}
    names = {subject for _, _, subject in subjects}
    rows = UsageExclusion.objects.filter(account_id__in=accounts, subject__in=names).values_list(
        "account_id", "subject_kind", "subject"
    )
    return {row for row in rows if row in subjects}


def insert_charges(rows: list[tuple]) -> None:
    """Insert charge rows given in _CHARGE_COLUMNS order (rules as a list)."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        columns = ", ".join(_CHARGE_COLUMNS)
        sql = f"COPY metering_charge ({columns}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row((*row[:9], dumps(row[9]), *row[10:]))
        return
    from .models import Charge

    Charge.objects.bulk_create(
        (Charge(**dict(zip(_CHARGE_COLUMNS, row, strict=True))) for row in rows), batch_size=1000
    )


# --- UsageDay (per-day counters kept by triggers on metering_charge) -------------------------

_USAGE_KEY = "account_id, period_start, meter, day, status"
_FOLD = f"""
WITH keys AS (
    SELECT DISTINCT {_USAGE_KEY} FROM metering_usageday WHERE NOT folded
), gone AS (
    DELETE FROM metering_usageday u USING keys k
    WHERE u.account_id = k.account_id AND u.period_start = k.period_start
      AND u.meter = k.meter AND u.day = k.day AND u.status = k.status
    RETURNING u.account_id, u.period_start, u.meter, u.day, u.status, u.units
), marked AS (
    INSERT INTO metering_periodtally (account_id, period_start, stale)
    SELECT DISTINCT account_id, period_start, TRUE FROM gone ORDER BY account_id, period_start
    ON CONFLICT (account_id, period_start) DO UPDATE SET stale = TRUE
    WHERE NOT metering_periodtally.stale
)
INSERT INTO metering_usageday ({_USAGE_KEY}, units, folded)
SELECT {_USAGE_KEY}, sum(units), TRUE FROM gone GROUP BY {_USAGE_KEY} HAVING sum(units) <> 0
"""


def fold_usage_days() -> int:
    """Merge each changed key's appended rows into one; return the keys folded. One
    statement: the rows summed are exactly the rows deleted, so a concurrent append (not yet
    visible) or a concurrent fold (its rows skipped once deleted) never loses a unit. On
    PostgreSQL the same statement marks the tallies of their periods stale (PeriodTally), in
    (account, period) order as the closes lock them."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_FOLD)
            return max(cursor.rowcount, 0)
    from django.db.models import Sum

    from .models import UsageDay

    fields = ("account_id", "period_start", "meter", "day", "status")
    with transaction.atomic():  # SQLite: one writer at a time
        keys = set(UsageDay.objects.filter(folded=False).values_list(*fields))
        folded = 0
        for key in keys:
            rows = UsageDay.objects.filter(**dict(zip(fields, key, strict=True)))
            units = rows.aggregate(n=Sum("units"))["n"]
            rows.delete()
            if units:
                UsageDay.objects.create(
                    **dict(zip(fields, key, strict=True)), units=units, folded=True
                )
                folded += 1
        return folded
