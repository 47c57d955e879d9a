"""Inserting many rows at once by COPY, for the append-only writers of a batch (the audit log
here, invoices and their rows at a period close).

`bulk_create` on PostgreSQL binds its values on the client: every value of every row is quoted
into the SQL text (a regular expression per string), so that closing 2,000 periods spent 2.6 s
in its five INSERTs (invoices, lines, closes, status changes, audit rows), mostly quoting.
COPY sends the rows as they are. The ids are taken from the table's sequence first, so the
caller gets its objects back with their pks, in order, as bulk_create gives them."""

import gc
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from operator import attrgetter

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import NOT_PROVIDED, DateTimeField, Field, ForeignKey, JSONField, Model
from django.db.models.expressions import DatabaseDefault

# Columns whose values of the types below the ORM sends unchanged.
_PLAIN_COLUMNS = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "IntegerField",
        "PositiveBigIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SmallAutoField",
        "SmallIntegerField",
        "TextField",
    }
)
_PLAIN_VALUES = frozenset({str, int, bool, type(None)})


def copy_insert(objs: Sequence[Model], *, batch_size: int = 2000) -> None:
    """Insert unsaved instances of one model, setting their pks (bulk_create off PostgreSQL).
    Model defaults are applied (the instances carry them); database defaults are not
    supported: such a model goes through bulk_create."""
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.generated]
    defaulted = [f for f in fields if f.db_default is not NOT_PROVIDED]
    if connection.vendor != "postgresql" or any(
        isinstance(getattr(obj, f.attname), DatabaseDefault) for obj in objs for f in defaulted
    ):
        model._default_manager.bulk_create(objs, batch_size=batch_size)
        return
    pk = meta.pk
    assert pk is not None
    db = connections[DEFAULT_DB_ALIAS]  # not the proxy: it is asked once per value below
    with db.cursor() as cursor:
        missing = [obj for obj in objs if obj.pk is None]
        if missing:
            for obj, value in zip(missing, _ids_take(cursor, meta, len(missing)), strict=True):
                obj.pk = value
        relations = [f for f in fields if f.is_relation]
        for obj in objs:
            if any(getattr(obj, f.attname) is None for f in relations):
                # A related object saved after it was assigned: its pk into the column, as
                # bulk_create does.
                obj._prepare_related_fields_for_save(  # type: ignore[attr-defined]
                    operation_name="copy_insert"
                )
        columns = ", ".join(db.ops.quote_name(f.column) for f in fields)
        table = db.ops.quote_name(meta.db_table)
        # Most values go as they are (a string in a text column); the others are prepared as
        # the ORM prepares them (JSON, dates, decimals, auto_now_add, lazy strings, enums).
        plain = [i for i, f in enumerate(fields) if _column_type(f) in _PLAIN_COLUMNS]
        # An aware datetime too: with USE_TZ the ORM hands it to psycopg unchanged (it only
        # warns about and converts naive ones), unless the field sets itself on save.
        instants = [
            i
            for i, f in enumerate(fields)
            if settings.USE_TZ and type(f) is DateTimeField and not (f.auto_now or f.auto_now_add)
        ]
        prepared = [i for i in range(len(fields)) if i not in plain and i not in instants]
        # JSON documents (no encoder of their own) written as JSON text by orjson: psycopg's
        # Jsonb runs the standard library's encoder, several times slower. None stays SQL
        # NULL, as the ORM stores it; what orjson cannot write goes the ORM's way.
        documents = [i for i in prepared if _plain_json(fields[i])]
        prepared = [i for i in prepared if i not in documents]
        values_of = attrgetter(*(f.attname for f in fields))  # one C call per object
        sql = f"COPY {table} ({columns}) FROM STDIN"
        started = time.monotonic()
        with cursor.cursor.copy(sql) as copy:
            for obj in objs:
                row = list(values_of(obj)) if len(fields) > 1 else [values_of(obj)]
                for i in plain:
                    value = row[i]
                    if type(value) not in _PLAIN_VALUES:
                        # A choice (TextChoices: a str subclass) goes as its text, which is
                        # what the ORM would send; anything else the ORM's way.
                        row[i] = (
                            str.__str__(value)
                            if isinstance(value, str)
                            else _prepare(fields[i], obj, db)
                        )
                for i in instants:
                    value = row[i]
                    if type(value) is not datetime or value.utcoffset() is None:
                        row[i] = _prepare(fields[i], obj, db)
                for i in documents:
                    if row[i] is not None:
                        try:
                            row[i] = orjson.dumps(row[i], option=orjson.OPT_NON_STR_KEYS).decode()
                        except TypeError:
                            row[i] = _prepare(fields[i], obj, db)
                for i in prepared:
                    row[i] = _prepare(fields[i], obj, db)
                copy.write_row(row)
        _copy_logged(db, sql, len(objs), started)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = db.alias


def copy_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence]) -> list[int]:
    """Insert rows of `model` given as values of `fields` (attnames: `invoice_id` for a
    relation; a JSON field's value as the document), by COPY; return their ids, in order.

    For the append-only rows of a batch that nobody reads back as objects (a close's invoice
    lines, status changes and usage closes): building a model instance per row for
    copy_insert cost more than writing it. The values go as the ORM would send them: a choice
    (a str subclass) as its text, a JSON document as JSON; the caller gives the rest ready
    (aware datetimes, Decimals, ints, plain strings). Every field without a value here must
    be nullable. Off PostgreSQL, bulk_create."""
    if not rows:
        return []
    meta = model._meta
    if connection.vendor != "postgresql":
        objs = [model(**dict(zip(fields, row, strict=True))) for row in rows]
        model._default_manager.bulk_create(objs)
        return [obj.pk for obj in objs]
    pk = meta.pk
    assert pk is not None
    by_attname = {f.attname: f for f in meta.concrete_fields}
    # JSON documents by orjson where the ORM would write plain JSON; any other JSON field (an
    # encoder of its own) the ORM's way.
    documents = [i for i, name in enumerate(fields) if isinstance(by_attname[name], JSONField)]
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        ids = _ids_take(cursor, meta, len(rows))
        columns = ", ".join(db.ops.quote_name(by_attname[name].column) for name in fields)
        table = db.ops.quote_name(meta.db_table)
        sql = f"COPY {table} ({db.ops.quote_name(pk.column)}, {columns}) FROM STDIN"
        started = time.monotonic()
        with cursor.cursor.copy(sql) as copy:
            for id_, values in zip(ids, rows, strict=True):
                row = [id_, *values]
                for i, value in enumerate(values, start=1):
                    if isinstance(value, str) and type(value) is not str:
                        row[i] = str.__str__(value)
                for i in documents:
                    row[i + 1] = _document(by_attname[fields[i]], row[i + 1], db)
                copy.write_row(row)
        _copy_logged(db, sql, len(rows), started)
    return ids


def _ids_take(cursor, meta, count: int) -> list[int]:
    """`count` ids from the table's sequence, in one call and in order: rows get ascending
    ids, as with bulk_create. A rollback leaves a gap in the sequence, never in what it
    numbers."""
    assert meta.pk is not None
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
        [meta.db_table, meta.pk.column, count],
    )
    return [value for (value,) in cursor.fetchall()]


def _copy_logged(db, sql: str, rows: int, started: float) -> None:
    """Log a COPY as Django logs what it executes (DEBUG, CaptureQueriesContext): one statement
    for all the rows, which the tests that count statements see."""
    if db.queries_logged:
        db.queries_log.append(
            {"sql": f"{sql} -- {rows} rows", "time": f"{time.monotonic() - started:.3f}"}
        )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off for one batch of bulk work, on again after it (or after
    its error): a close batch keeps thousands of new model instances alive until it commits,
    and every few hundred allocations the collector walked them again, with the whole
    application's objects at each full pass: a quarter of the close's CPU. What the batch
    leaves behind is collected once, after it."""
    if not gc.isenabled():
        yield  # an outer batch paused it: it turns it back on
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _plain_json(field: Field) -> bool:
    """A JSONField of Django's own, with no encoder of its own."""
    return isinstance(field, JSONField) and type(field) is JSONField and not field.encoder


def _document(field: Field, value, db):
    """A JSON field's value as COPY takes it: None as SQL NULL, as the ORM stores it."""
    if value is None:
        return None
    if _plain_json(field):
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            pass  # what orjson cannot write goes the ORM's way
    return field.get_db_prep_save(value, db)


def _prepare(field: Field, obj: Model, db):
    return field.get_db_prep_save(field.pre_save(obj, True), db)


def _column_type(field: Field) -> str:
    """The field's own type, or for a foreign key the type of the column it points to."""
    if isinstance(field, ForeignKey):
        return field.target_field.get_internal_type()
    return field.get_internal_type()
