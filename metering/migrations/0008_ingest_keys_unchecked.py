"""Ingest's tables stop checking their account row by row; the per-day counters get an index
on their day (docs/performance.md, "Foreign keys on the ingest path").

An event, a re-evaluation mark and a charge row each made PostgreSQL look up and share-lock
their account row (`SELECT … FOR KEY SHARE`), one statement per row: 206,000 of them for
100,000 events, on the same fifty account rows from four connections at once. Every one of
these rows is written for an account that ingest has just read by its key; an account is never
deleted by the app (the ORM still refuses to delete one with events: `on_delete` is Django's,
not the database's). The columns keep their indexes and their meaning.

The spike guard reads the per-day counters of the last two days (`UsageDay.day`): without an
index leading with the day, that read grew with every month kept (61 ms against 16 ms with two
years behind 2,000 accounts). Counters are appended once per key and statement, never per
event, so the index costs ingest nothing it can measure.

On SQLite (the demo) the foreign keys stay: it would rebuild the tables for nothing.
"""

import django.db.models.deletion
from django.db import migrations, models

# (table, column, the constraint's name when put back)
_CHECKED = (
    ("metering_event", "account_id", "metering_event_account_id_fk"),
    ("metering_reevaluation", "account_id", "metering_reevaluation_account_id_fk"),
    ("metering_charge", "account_id", "metering_charge_account_id_fk"),
)


def checks_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, column, _ in _CHECKED:
            # The partitioned tables' own constraint (their partitions' go with it).
            cursor.execute(
                "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) "
                "WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND c.conparentid = 0 "
                "AND c.confrelid = 'accounts_account'::regclass AND a.attname = %s",
                [table, column],
            )
            for (name,) in cursor.fetchall():
                schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


def checks_add(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column, name in _CHECKED:
        schema_editor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
            "REFERENCES accounts_account (id) DEFERRABLE INITIALLY DEFERRED"
        )


def _unchecked(on_delete, **options):
    return models.ForeignKey(
        db_constraint=False, on_delete=on_delete, to="accounts.account", **options
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("metering", "0007_subject_spans"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="account",
                    field=_unchecked(django.db.models.deletion.PROTECT, db_index=False),
                ),
                migrations.AlterField(
                    model_name="reevaluation",
                    name="account",
                    field=_unchecked(django.db.models.deletion.CASCADE),
                ),
                migrations.AlterField(
                    model_name="charge",
                    name="account",
                    field=_unchecked(django.db.models.deletion.CASCADE, db_index=False),
                ),
            ],
            database_operations=[migrations.RunPython(checks_drop, checks_add)],
        ),
        migrations.AddIndex(
            model_name="usageday",
            index=models.Index(fields=["day"], name="usageday_day_idx"),
        ),
    ]
