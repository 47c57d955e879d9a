"""Where each subject's events and charge rows begin (metering.models.EventSpan, ChargeSpan).

Triggers keep them as rows are written (migration 0007). Rows that come back another way, an
archived month attached again (metering.partitions), extend them here: a span made after that
month was archived would otherwise start after the month's rows, and re-evaluation would not
read them."""

# A row's subject and the instant its span is about, per table: a campaign click's browser
# session, an AI session event's session, else the event's ticket; a charge row's own subject
# and period (rows with no period are always read and have no span).
_SUBJECTS = {
    "metering_event": (
        "SELECT account_id, CASE type WHEN 'campaign_click' THEN 'browser_session' "
        "WHEN 'ai_session' THEN 'ai_session' ELSE 'ticket' END AS kind, "
        "CASE WHEN type IN ('campaign_click', 'ai_session') THEN session ELSE ticket END "
        "AS subject, received_at AS at FROM {rows}"
    ),
    "metering_charge": (
        "SELECT account_id, subject_kind AS kind, subject, period_start AS at FROM {rows} "
        "WHERE period_start IS NOT NULL"
    ),
}


def spans_extend(cursor, *, table: str, rows: str) -> None:
    """Move the spans of `table` back to cover the rows of `rows` (a partition of it). Both
    names are this package's own (metering.partitions.TABLES and its partitions), never input."""
    subjects = _SUBJECTS[table].format(rows=rows)
    cursor.execute(
        f"INSERT INTO {table}span (account_id, kind, subject, since) "  # noqa: S608 (constants)
        f"SELECT account_id, kind, subject, min(at) FROM ({subjects}) s "
        "WHERE subject IS NOT NULL GROUP BY account_id, kind, subject "
        'ORDER BY account_id, kind COLLATE "C", subject COLLATE "C" '
        "ON CONFLICT (account_id, kind, subject) DO UPDATE SET since = excluded.since "
        f"WHERE excluded.since < {table}span.since"
    )
