"""Where each subject's events and charge rows begin (metering.models.EventSpan, ChargeSpan).

On PostgreSQL, triggers keep them: a statement trigger on each table's inserts and updates (one
grouped insert per statement, from its transition table). The spans of the rows already stored are written after the triggers,
in the same transaction. The SQLite demo keeps the tables empty: its reads are not bounded."""

from django.db import migrations, models

_KINDS = [
    ("ticket", "Ticket"),
    ("ai_session", "AI session"),
    ("browser_session", "browser session"),
]

# A stored event's subject, as re-evaluation loads it (metering.services._load_events): a
# campaign click's browser session, an AI session event's session, else its ticket.
_EVENT_KIND = (
    "CASE {r}type WHEN 'campaign_click' THEN 'browser_session' "
    "WHEN 'ai_session' THEN 'ai_session' ELSE 'ticket' END"
)
_EVENT_SUBJECT = (
    "CASE WHEN {r}type IN ('campaign_click', 'ai_session') THEN {r}session ELSE {r}ticket END"
)
_SPANS = {
    "event": (
        f"SELECT account_id, {_EVENT_KIND.format(r='')} AS kind, "  # noqa: S608 (constants)
        f"{_EVENT_SUBJECT.format(r='')} AS subject, received_at AS at FROM {{rows}}"
    ),
    "charge": (
        "SELECT account_id, subject_kind AS kind, subject, period_start AS at FROM {rows} "
        "WHERE period_start IS NOT NULL"
    ),
}


def _grouped(table: str, rows: str) -> str:
    return (
        "SELECT account_id, kind, subject, min(at) AS since "  # noqa: S608 (constants)
        f"FROM ({_SPANS[table].format(rows=rows)}) s "
        "WHERE subject IS NOT NULL AND at IS NOT NULL GROUP BY account_id, kind, subject"
    )


def _statement_body(table: str) -> str:
    """New subjects inserted (in key order, as every writer of a shared row takes them), then
    the spans an earlier row moves back: ON CONFLICT DO UPDATE would lock every subject's row
    to the end of the transaction even when it changes nothing. The update is a statement of
    its own, so that it sees a span a concurrent ingest committed while this one waited."""
    span = f"metering_{table}span"
    return (
        f"INSERT INTO {span} (account_id, kind, subject, since) "  # noqa: S608 (constants)
        f"SELECT * FROM ({_grouped(table, 'new_rows')}) g "
        'ORDER BY account_id, kind COLLATE "C", subject COLLATE "C" '
        "ON CONFLICT (account_id, kind, subject) DO NOTHING; "
        f"UPDATE {span} t SET since = g.since FROM ({_grouped(table, 'new_rows')}) g "
        "WHERE t.account_id = g.account_id AND t.kind = g.kind AND t.subject = g.subject "
        "AND g.since < t.since"
    )


def spans_keep(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in _SPANS:
        source = f"metering_{table}"
        schema_editor.execute(
            f"CREATE FUNCTION {source}span_inserted() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_statement_body(table)}; RETURN NULL; END $$"
        )
        schema_editor.execute(
            f"CREATE TRIGGER {source}span_inserted AFTER INSERT ON {source} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {source}span_inserted()"
        )
        # An update that moves a row to another month's partition fires no insert trigger
        # (PostgreSQL runs it as a delete and an insert, but fires only the statement's UPDATE
        # triggers), and a column list is not allowed with transition tables: every update
        # statement, then. Events are never updated; charges' updates are status changes.
        schema_editor.execute(
            f"CREATE TRIGGER {source}span_updated AFTER UPDATE ON {source} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {source}span_inserted()"
        )
        schema_editor.execute(
            f"INSERT INTO {source}span (account_id, kind, subject, since) {_grouped(table, source)}"
        )


def spans_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in _SPANS:
        source = f"metering_{table}"
        for trigger in ("inserted", "updated"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {source}span_{trigger} ON {source}")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {source}span_inserted()")


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0006_spike_guard"),
    ]

    operations = [
        migrations.CreateModel(
            name="ChargeSpan",
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
