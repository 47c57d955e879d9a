"""Costs of Django's PostgreSQL backend that the bulk paths (a period close, re-evaluation,
the pages of an account with many invoices) paid per value or per statement, taken off once
for every query.

- Reading a `timestamptz`: Django's loader parses each value in Python (psycopg's pure-Python
  loader, then a `replace`), about 5 µs a value; `datetime.fromisoformat` reads PostgreSQL's
  text as fast as psycopg's C loader, which Django's subclass cannot use. Registered on each
  new connection when Django's time zone is UTC (the settings'): it gives the very values
  Django's loader gives.
- `field__any=[…]`: one array parameter (`= ANY(%s)`) where `field__in=[…]` compiles, quotes
  and splits one placeholder per value: for the 500 ids of a close batch the ORM's IN list
  cost more to build than the database to answer. Off PostgreSQL it is `__in`.
- Arrays bound by Django's cursors: psycopg quotes a plain list item by item through its
  Python dumpers (7.5 % of a period close's CPU, for the batch's ids and periods).
  `IntArray` and `TimestamptzArray` are written as one array literal each instead.
- JIT compilation, off for the app's sessions (see `_session_tune`).
"""

from datetime import UTC, datetime

from django.db.backends.signals import connection_created
from django.db.models import Field, ForeignObject, Lookup
from django.db.models.lookups import In
from psycopg.adapt import Dumper
from psycopg.types.datetime import TimestamptzLoader


class UtcTimestamptzLoader(TimestamptzLoader):
    # Django compares this with the connection's time zone before each cursor, and registers
    # its own loader again where they differ.
    timezone = UTC

    def load(self, data):
        try:
            value = datetime.fromisoformat(bytes(data).decode())
        except ValueError:  # BC dates, infinity: psycopg's own loader and its errors
            return super().load(data).astimezone(UTC)
        return value if value.tzinfo is UTC else value.astimezone(UTC)


class IntArray(list):
    """Integers (ids) for an `%s::bigint[]` parameter of a Django cursor, sent as one literal."""


class TimestamptzArray(list):
    """Aware datetimes (or None) for an `%s::timestamptz[]` parameter, sent as one literal."""


class _IntArrayDumper(Dumper):
    def dump(self, obj):
        return ("{" + ",".join(map(str, obj)) + "}").encode()


class _TimestamptzArrayDumper(Dumper):
    def dump(self, obj):
        # isoformat() holds no quote or backslash: each item is safe between double quotes.
        items = ("NULL" if at is None else f'"{at.isoformat()}"' for at in obj)
        return ("{" + ",".join(items) + "}").encode()


def _session_tune(sender, connection, **kwargs) -> None:
    if connection.vendor != "postgresql":
        return
    adapters = connection.connection.adapters
    adapters.register_dumper(IntArray, _IntArrayDumper)
    adapters.register_dumper(TimestamptzArray, _TimestamptzArrayDumper)
    # Django's own time zone is UTC (USE_TZ and no TIME_ZONE for the database): its loader
    # would stamp the values UTC; this one converts them to UTC, whatever the session's zone.
    if connection.timezone is UTC:
        adapters.register_loader("timestamptz", UtcTimestamptzLoader)
    # No JIT compilation: our statements are short, and a plan over many month partitions
    # passes jit_above_cost as the tables grow. With two years of history, re-evaluation's
    # event and charge reads spent 80-110 ms compiling each (of 200-250 ms), per batch.
    # On the raw connection: a statement of the session's set-up, not of the app's queries.
    connection.connection.execute("SET jit = off")


class AnyOf(Lookup):
    """`field__any=values`: the rows whose field is one of `values` (plain values, not
    model instances or querysets)."""

    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        field = self.lhs.output_field
        values = [field.get_prep_value(value) for value in self.rhs]
        if connection.vendor != "postgresql":
            return In(self.lhs, values).as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        array = [field.get_db_prep_value(value, connection, prepared=True) for value in values]
        if all(type(value) is int for value in array):
            array = IntArray(array)
        return f"{lhs} = ANY(%s::{field.db_type(connection)}[])", [*lhs_params, array]


def install() -> None:
    Field.register_lookup(AnyOf)
    ForeignObject.register_lookup(AnyOf)  # relations keep lookups of their own
    connection_created.connect(_session_tune, dispatch_uid="audit.sql.session_tune")
