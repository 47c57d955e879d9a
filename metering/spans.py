"""Where each subject's events begin (metering.models.EventSpan).

A trigger keeps the spans as events are written (migration 0007). Events that come back another
way, an archived month attached again (metering.partitions), extend them here: a span made after
that month was archived would otherwise begin after the month's events, and re-evaluation would
not read them."""

from .models import SubjectKind
from .rules import types

# A stored event's subject, in SQL over its columns: a campaign click's browser session, an AI
# session event's session, else its ticket (as metering.services loads them; ingest's queue
# marks, metering.event_store, and the spans' trigger of migration 0007 say the same).
SUBJECT_KIND = (
    f"CASE type WHEN '{types.CAMPAIGN_CLICK}' THEN '{SubjectKind.BROWSER_SESSION}' "
    f"WHEN '{types.AI_SESSION_EVENT}' THEN '{SubjectKind.AI_SESSION}' "
    f"ELSE '{SubjectKind.TICKET}' END"
)
SUBJECT = (
    f"CASE WHEN type IN ('{types.CAMPAIGN_CLICK}', '{types.AI_SESSION_EVENT}') "
    "THEN session ELSE ticket END"
)


def spans_extend(cursor, *, rows: str) -> None:
    """Move the spans back to cover the events of `rows` (a partition of metering_event: a
    name of metering.partitions', never input)."""
    cursor.execute(
        "INSERT INTO metering_eventspan (account_id, kind, subject, since) "  # noqa: S608
        f"SELECT * FROM (SELECT account_id, {SUBJECT_KIND} AS kind, "
        f"{SUBJECT} AS subject, min(received_at) FROM {rows} WHERE {SUBJECT} IS NOT NULL "
        'GROUP BY 1, 2, 3) g ORDER BY account_id, kind COLLATE "C", subject COLLATE "C" '
        "ON CONFLICT (account_id, kind, subject) DO UPDATE SET since = excluded.since "
        "WHERE excluded.since < metering_eventspan.since"
    )
