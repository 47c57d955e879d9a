"""Events and charges partitioned by month on PostgreSQL (metering.partitions).

An event id's uniqueness moves to `metering_event_key` (a partitioned table enforces uniqueness
only within a partition); a charge's becomes unique per period. On PostgreSQL both tables are
then rebuilt as partitioned tables with their rows, constraints, indexes and (charges) the per-day
counter triggers of 0003. Other databases (the SQLite demo) keep plain tables.
"""

import importlib
from datetime import UTC, datetime

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

_usage_day = importlib.import_module("metering.migrations.0003_usage_day")

_PARTITION_KEYS = {"metering_event": "received_at", "metering_charge": "period_start"}
# The key's column must be in the primary key of a partitioned table; a charge's period may be
# NULL (not counted), so charges get a plain index on id instead of a primary key.
_PRIMARY_KEYS = {"metering_event": "PRIMARY KEY (id, received_at)", "metering_charge": None}


def _month_add(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _partition(cursor, table: str, month: datetime) -> None:
    cursor.execute(
        f"CREATE TABLE {table}_p{month:%Y_%m} PARTITION OF {table} FOR VALUES FROM (%s) TO (%s)",
        [month, _month_add(month, 1)],
    )


def _rebuild_partitioned(cursor, table: str) -> None:
    """Rename the table away, create it partitioned with the same columns, move the rows over,
    then put back its constraints and indexes (read from the old table) and drop it."""
    key = _PARTITION_KEYS[table]
    old = f"{table}_unpartitioned"
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype <> 'p' ORDER BY conname",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass) ORDER BY indexname",
        [table, table],
    )
    indexes = cursor.fetchall()
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    # Identity columns on partitioned tables need PostgreSQL 17: a sequence owned by the column.
    cursor.execute(f"ALTER TABLE {old} ALTER COLUMN id DROP IDENTITY")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE ({key})"
    )
    cursor.execute(f"CREATE SEQUENCE {table}_id_seq OWNED BY {table}.id")
    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
    cursor.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    now = timezone.now()
    cursor.execute(f"SELECT DISTINCT date_trunc('month', {key} AT TIME ZONE 'UTC') FROM {old}")
    months = {row[0].replace(tzinfo=UTC) for row in cursor.fetchall() if row[0] is not None}
    # The months of the last three years that hold rows, and the current one with the one
    # before (where most current usage periods start) and the next; older rows stay in the
    # default partition.
    months = {m for m in months if m >= _month_add(now, -36)}
    months |= {_month_add(now, offset) for offset in range(-1, 2)}
    for month in sorted(months):
        _partition(cursor, table, month)
    cursor.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    cursor.execute(f"SELECT setval('{table}_id_seq', coalesce(max(id), 0) + 1, false) FROM {table}")
    cursor.execute(f"DROP TABLE {old}")
    if _PRIMARY_KEYS[table]:
        cursor.execute(f"ALTER TABLE {table} ADD {_PRIMARY_KEYS[table]}")
    else:
        cursor.execute(f"CREATE INDEX {table}_id_idx ON {table} (id)")
    for name, definition in constraints:
        if definition.startswith("UNIQUE ("):
            # A unit not counted has no period: NULL must not make two such rows distinct.
            definition = definition.replace("UNIQUE (", "UNIQUE NULLS NOT DISTINCT (", 1)
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    for _, definition in indexes:
        cursor.execute(definition.replace(f" ON public.{old} ", f" ON public.{table} "))


def partition_tables(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        # SQLite rebuilt metering_charge to change its constraints, and its triggers with it.
        for statement in _usage_day._sqlite_forward():
            name = statement.split()[2]
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
            schema_editor.execute(statement)
        return
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in _PARTITION_KEYS:
            _rebuild_partitioned(cursor, table)
        # The per-day counters' triggers went with the old charge table (0003 made them).
        for statement in _usage_day._postgres_forward():
            cursor.execute(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))


def keys_fill(apps, schema_editor):
    schema_editor.execute(
        "INSERT INTO metering_event_key (account_id, event_id, received_at) "
        "SELECT account_id, event_id, received_at FROM metering_event"
    )


class Migration(migrations.Migration):
    # The rebuild is one transaction with the rest: all of it or none.
    dependencies = [
        ("accounts", "0002_api_key_scopes_expiry"),
        ("metering", "0003_usage_day"),
    ]

    operations = [
        migrations.CreateModel(
            name="ArchivedPartition",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "table",
                    models.CharField(help_text="metering_event or metering_charge", max_length=40),
                ),
                ("month", models.DateField(help_text="The first day of the month archived (UTC).")),
                ("rows", models.BigIntegerField()),
                ("path", models.CharField(max_length=500)),
                ("sha256", models.CharField(max_length=64)),
                ("archived_at", models.DateTimeField()),
                ("restored_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("table", "month"), name="archive_once_per_month"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="EventKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "account_id",
                        "event_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "account",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        to="accounts.account",
                    ),
                ),
                ("event_id", models.CharField(max_length=255)),
                ("received_at", models.DateTimeField()),
            ],
            options={"db_table": "metering_event_key"},
        ),
        migrations.RunPython(keys_fill, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="charge", name="charge_once"),
        migrations.RemoveConstraint(model_name="event", name="event_once_per_account"),
        migrations.AddConstraint(
            model_name="charge",
            constraint=models.UniqueConstraint(
                fields=("account", "subject_kind", "subject", "meter", "unit", "period_start"),
                name="charge_once_per_period",
            ),
        ),
        # Forward only on PostgreSQL: going back would mean rebuilding plain tables.
        migrations.RunPython(partition_tables, migrations.RunPython.noop),
    ]
