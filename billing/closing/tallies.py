"""A batch of closes' final units: each period closed now counted from its charges, each
earlier period whose late usage it bills (F6) read from its tally unless that may have
changed (metering.PeriodTally).

Counting the earlier periods again every month was most of a close with a year behind it:
twelve periods' charges for each account (docs/performance.md, "The close's growth"). A
tally is marked stale by the fold of the per-day counters, which takes every change to a
period's final units (the triggers on metering_charge append one) and runs as the closes
start (`claim.close_all`). So a change committed before that fold is in every count this run
uses; one committed after it is counted by the next close, never lost, never billed twice
(late usage is the difference to `billed_units`).

Every closed period has a tally (a trigger on the closes' inserts makes a stale one where none
is, billing migration 0017). So the earlier periods with late units to bill are those whose
tally is stale or uncounted (`periods_moved`), and a close reads the history of those
accounts alone (closing.price.close_histories): its cost does not grow with the history.

The order in the close's transaction is what keeps that true under concurrency:

1. read the tallies of the earlier periods, without a lock: a fresh one is used as it is (a
   fold that marks it stale a moment later marks a change the next close counts);
2. clear `stale` on the tallies about to be counted (`UPDATE … RETURNING`): they stay locked,
   so a fold marking one meanwhile waits for this close and marks it after; a mark committed
   before is cleared, but its change committed before the fold, so before the count below;
3. count the charges;
4. write the counts: into the tallies locked in 2, and as new tallies where there was none
   (`ON CONFLICT DO NOTHING`: a tally a fold made in the meantime stays stale).
"""

import json
from collections.abc import Iterable
from datetime import datetime

import orjson
from django.db import connection

from audit.sql import IntArray

from .price import units_by_period

Pair = tuple[int, datetime]  # (account id, usage period start)
Units = dict[Pair, dict[str, int]]


def units_for_closes(current: Iterable[Pair], earlier: Iterable[Pair]) -> Units:
    """Final units per meter of the periods closed now (`current`) and of the earlier periods
    their closes look back at (`earlier`); a pair without final units maps to {}. Runs in the
    close's transaction."""
    current, earlier = set(current), set(earlier) - set(current)
    if connection.vendor != "postgresql":  # the SQLite demo keeps no tallies
        counted = units_by_period(current | earlier)
        return {pair: dict(counted.get(pair, {})) for pair in current | earlier}
    fresh = _fresh_tallies(earlier)
    recount = current | (earlier - fresh.keys())
    locked = _stale_cleared(recount)
    counted = units_by_period(recount)
    units = {pair: dict(counted.get(pair, {})) for pair in recount}
    _tallies_write(units, locked)
    return {**fresh, **units}


def periods_moved(usage_starts: dict[int, datetime]) -> set[Pair] | None:
    """The earlier periods (before the one each account closes now, `usage_starts`) whose
    final units may have changed since they were last counted: their tally is stale or was
    never counted. Every closed period has a tally (billing migration 0017), so no other
    earlier period can bill late usage (F6) or re-rate a term (Z9), and a close need not look
    at the rest of an account's history. Read through the index of those tallies alone.

    None on SQLite, which keeps no tallies: any period may have moved."""
    if connection.vendor != "postgresql":
        return None
    if not usage_starts:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(*periods_moved_statement(usage_starts))
        return {
            (account_id, start)
            for account_id, start in cursor.fetchall()
            if start < usage_starts[account_id]
        }


def periods_moved_statement(account_ids: Iterable[int]) -> tuple[str, list]:
    """The accounts' stale or uncounted tallies, every period: the condition is the partial
    index's (`periodtally_moved_idx`), so only those are read (tests/billing/
    test_close_plans.py)."""
    return (
        "SELECT account_id, period_start FROM metering_periodtally "
        "WHERE account_id = ANY(%s::bigint[]) AND (stale OR units IS NULL)",
        [IntArray(sorted(account_ids))],
    )


def _fresh_tallies(pairs: set[Pair]) -> Units:
    """The fresh tallies of `pairs`. Read by account from the earliest period asked for (the
    primary key's order) and picked here: cheaper than sending every pair's instant."""
    if not pairs:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, period_start, units FROM metering_periodtally "
            "WHERE account_id = ANY(%s::bigint[]) AND period_start >= %s "
            "AND NOT stale AND units IS NOT NULL",
            [IntArray(sorted({a for a, _ in pairs})), min(p for _, p in pairs)],
        )
        return {
            (account_id, start): units if isinstance(units, dict) else orjson.loads(units)
            for account_id, start, units in cursor.fetchall()
            if (account_id, start) in pairs
        }


def _as_rows(pairs: Iterable[Pair], units: Units | None = None) -> str:
    """Pairs (and their units) as one JSON document for `jsonb_to_recordset`, in (account,
    period) order: one parameter, where arrays of instants and documents cost the client an
    item-by-item quoting."""
    return json.dumps(
        [
            {"a": a, "p": p.isoformat(), **({"u": units[(a, p)]} if units is not None else {})}
            for a, p in sorted(pairs)
        ]
    )


def _stale_cleared(pairs: set[Pair]) -> set[Pair]:
    """Clear `stale` on the tallies of `pairs` that exist; return those pairs (locked until the
    close commits). Locked first in (account, period) order, as the fold marks them: an
    UPDATE joined to the pairs would lock in whatever order its plan reads the table, and a
    close and a fold could then wait for each other."""
    if not pairs:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE metering_periodtally t SET stale = FALSE "
            "WHERE (t.account_id, t.period_start) IN (SELECT l.account_id, l.period_start "
            "FROM metering_periodtally l JOIN jsonb_to_recordset(%s::jsonb) "
            "AS w(a bigint, p timestamptz) ON l.account_id = w.a AND l.period_start = w.p "
            "ORDER BY l.account_id, l.period_start FOR UPDATE OF l) "
            "RETURNING t.account_id, t.period_start",
            [_as_rows(pairs)],
        )
        return set(cursor.fetchall())


def _tallies_write(units: Units, locked: set[Pair]) -> None:
    kept = [pair for pair in units if pair in locked]
    new = [pair for pair in units if pair not in locked]
    rows = "jsonb_to_recordset(%s::jsonb) AS w(a bigint, p timestamptz, u jsonb)"
    with connection.cursor() as cursor:
        if kept:
            cursor.execute(
                f"UPDATE metering_periodtally t SET units = w.u FROM {rows} "  # noqa: S608
                "WHERE t.account_id = w.a AND t.period_start = w.p",
                [_as_rows(kept, units)],
            )
        if new:
            cursor.execute(
                "INSERT INTO metering_periodtally (account_id, period_start, units, stale) "  # noqa: S608
                f"SELECT a, p, u, FALSE FROM {rows} "
                "ORDER BY a, p ON CONFLICT (account_id, period_start) DO NOTHING",
                [_as_rows(new, units)],
            )
