"""Where each subject's events begin (metering.models.EventSpan).

A trigger keeps the spans as events are written (migration 0007). Events that come back another
way, an archived month attached again (metering.partitions), extend them here: a span made after
that month was archived would otherwise begin after the month's events, and re-evaluation would
not read them."""

# An event's subject: a campaign click's browser session, an AI session event's session, else
# its ticket (as metering.services loads them).
_SUBJECT = "CASE WHEN type IN ('campaign_click', 'ai_session') THEN session ELSE ticket END"


def spans_extend(cursor, *, rows: str) -> None:
    """Move the spans back to cover the events of `rows` (a partition of metering_event: a
    name of metering.partitions', never input)."""
    cursor.execute(
        "INSERT INTO metering_eventspan (account_id, kind, subject, since) "  # noqa: S608
        "SELECT * FROM (SELECT account_id, CASE type WHEN 'campaign_click' THEN 'browser_session' "
        "WHEN 'ai_session' THEN 'ai_session' ELSE 'ticket' END AS kind, "
        f"{_SUBJECT} AS subject, min(received_at) FROM {rows} WHERE {_SUBJECT} IS NOT NULL "
        'GROUP BY 1, 2, 3) g ORDER BY account_id, kind COLLATE "C", subject COLLATE "C" '
        "ON CONFLICT (account_id, kind, subject) DO UPDATE SET since = excluded.since "
        "WHERE excluded.since < metering_eventspan.since"
    )
