"""Months of past usage behind a bench's accounts: what a deployment holds after two years, so
that a bench can show whether a cost grows with the tables (`--history-months` of the ingest
and close benches).

The rows are made by PostgreSQL itself (`INSERT … SELECT … FROM generate_series`), a month at
a time into that month's partitions (made as beat's daily job would have: the default
retention, USAGE_RETENTION_MONTHS = 25, keeps all 24 attached). Each past ticket has a final
charge and the event that made it, with its idempotency key. The setup is not timed.
"""

from datetime import datetime

# The meters as the benches spread them: mostly helpdesk tickets.
METERS = ["helpdesk_tickets"] * 6 + ["voice_tickets", "sms_tickets", "automated_interactions"]

_CHARGES = """
INSERT INTO metering_charge (account_id, subject_kind, subject, meter, unit, status,
    billable_at, period_start, rules, evaluated_at, recorded_at)
SELECT (%(accounts)s::bigint[])[1 + g %% %(n_accounts)s], 'ticket', %(prefix)s || g,
    (%(meters)s::text[])[1 + (g * 7) %% %(n_meters)s], 1, 'final',
    %(start)s + (g %% %(span)s) * interval '1 second', %(start)s, '["H1"]',
    %(start)s + (g %% %(span)s) * interval '1 second',
    %(start)s + (g %% %(span)s) * interval '1 second'
FROM generate_series(0, %(rows)s - 1) AS g
"""
_KEYS = """
INSERT INTO metering_event_key (account_id, event_id, received_at)
SELECT (%(accounts)s::bigint[])[1 + g %% %(n_accounts)s], %(prefix)s || g,
    %(start)s + (g %% %(span)s) * interval '1 second'
FROM generate_series(0, %(rows)s - 1) AS g
"""
_EVENTS = """
INSERT INTO metering_event (account_id, event_id, type, occurred_at, received_at, ticket,
    customer, channel, author, attrs)
SELECT (%(accounts)s::bigint[])[1 + g %% %(n_accounts)s], %(prefix)s || g, 'message',
    %(start)s + (g %% %(span)s) * interval '1 second',
    %(start)s + (g %% %(span)s) * interval '1 second',
    %(prefix)s || g, 'customer-' || (g %% 5000), 'email', 'customer', '{}'::jsonb
FROM generate_series(0, %(rows)s - 1) AS g
"""


def history_fill(
    *, account_ids: list[int], before: datetime, months: int, charges: int, events: bool
) -> None:
    """`charges` final charge rows (and with `events`, their events and keys) spread evenly over
    the `months` calendar months before `before`, one ticket each, for these accounts."""
    from django.db import connection

    from metering import partitions

    per_month = charges // months
    for back in range(months, 0, -1):
        start = partitions.month_add(before, -back)
        end = partitions.month_add(before, -back + 1)
        partitions.partitions_ensure(now=start, behind=0, ahead=0)
        params = {
            "accounts": account_ids,
            "n_accounts": len(account_ids),
            "meters": METERS,
            "n_meters": len(METERS),
            "prefix": f"hist-{start:%Y%m}-",
            "start": start,
            "span": int((end - start).total_seconds()) - 1,
            "rows": per_month,
        }
        with connection.cursor() as cursor:
            cursor.execute(_CHARGES, params)
            if events:
                cursor.execute(_KEYS, params)
                cursor.execute(_EVENTS, params)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # what autovacuum would have done over two years
