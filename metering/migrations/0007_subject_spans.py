"""Where each subject's events begin (metering.models.EventSpan).

On PostgreSQL a statement trigger on the event table's inserts (and updates, which the app never
makes) keeps it: one grouped upsert per statement, from its transition table. The spans of the
events already stored are written after the trigger, in the same transaction. The SQLite demo
keeps the table empty: its reads are not bounded."""

from django.db import migrations, models

_KINDS = [
    ("ticket", "Ticket"),
    ("ai_session", "AI session"),
    ("browser_session", "browser session"),
]

# A stored event's subject, as re-evaluation loads it (metering.services._load_events): a
# campaign click's browser session, an AI session event's session, else its ticket. Frozen
# here as migrations are; metering.spans holds the app's own copy.
_SUBJECT = "CASE WHEN type IN ('campaign_click', 'ai_session') THEN session ELSE ticket END"
_SPANS = (
    "SELECT account_id, CASE type WHEN 'campaign_click' THEN 'browser_session' "  # noqa: S608
    "WHEN 'ai_session' THEN 'ai_session' ELSE 'ticket' END AS kind, "
    f"{_SUBJECT} AS subject, min(received_at) AS since FROM {{rows}} "
    f"WHERE {_SUBJECT} IS NOT NULL GROUP BY 1, 2, 3"
)
# In subject order, as every writer of a subject's rows takes them (ingest's queue marks come
# next, in the same order): two ingests of one ticket wait for each other, never deadlock.
# ON CONFLICT DO UPDATE and not DO NOTHING then an UPDATE: half the cost, and the rows it
# locks are the ones the queue marks lock anyway.
_UPSERT = (
    "INSERT INTO metering_eventspan (account_id, kind, subject, since) "  # noqa: S608
    'SELECT * FROM ({rows}) g ORDER BY account_id, kind COLLATE "C", subject COLLATE "C" '
    "ON CONFLICT (account_id, kind, subject) DO UPDATE SET since = excluded.since "
    "WHERE excluded.since < metering_eventspan.since"
)


def spans_keep(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    body = _UPSERT.format(rows=_SPANS.format(rows="new_rows"))
    schema_editor.execute(
        "CREATE FUNCTION metering_eventspan_kept() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {body}; RETURN NULL; END $$"
    )
    # An update that moves a row to another month's partition fires no insert trigger
    # (PostgreSQL runs it as a delete and an insert, but fires the statement's UPDATE triggers
    # only), and transition tables allow no column list: every update statement, then.
    for operation in ("insert", "update"):
        schema_editor.execute(
            f"CREATE TRIGGER metering_eventspan_{operation} AFTER {operation.upper()} "
            "ON metering_event REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION metering_eventspan_kept()"
        )
    schema_editor.execute(_UPSERT.format(rows=_SPANS.format(rows="metering_event")))


def spans_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for operation in ("insert", "update"):
        schema_editor.execute(
            f"DROP TRIGGER IF EXISTS metering_eventspan_{operation} ON metering_event"
        )
    schema_editor.execute("DROP FUNCTION IF EXISTS metering_eventspan_kept()")


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0006_spike_guard"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventSpan",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "account_id",
                        "kind",
                        "subject",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("account_id", models.BigIntegerField()),
                ("kind", models.CharField(choices=_KINDS, max_length=16)),
                ("subject", models.CharField(max_length=255)),
                ("since", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(spans_keep, spans_drop),
    ]
