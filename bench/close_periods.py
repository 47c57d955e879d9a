"""Benchmark: closing one period for 10,000 accounts with 1,000,000 ticket results in it.

Measures `run_billing` (what the periodic task runs) closing every account's monthly period:
one invoice each, with its usage lines (Stripe excluded: payments are not part of closing).
The baseline, in the same run: one hand-written SQL aggregate over the same charge rows,
`COUNT(*) … GROUP BY account, meter` — the least work that reads that usage at all (the
best of three, on the run's warm copy).

    .venv/bin/python bench/close_periods.py [--accounts 10000] [--charges 1000000]
        [--history-months 24 [--late-share 0.1]]

It runs three times (`--runs`) and prints each run and the median (by run_billing / baseline),
with the CPU time per invoice of each component: the worker (this process, running run_billing)
and the database (PostgreSQL's backend serving it). The data is prepared once in its own
database (bench_close, or BENCH_DB), and each run closes a fresh copy of it; every database it
made is dropped at the end.
"""

import argparse
import os
import random
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import measure  # noqa: E402

PG = measure.PG
DB_NAME = os.environ.get("BENCH_DB", "bench_close")
os.environ.update(DATABASE_URL=f"{PG}/{DB_NAME}", DEBUG="false")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
PLANS = ["starter", "basic", "pro", "advanced"]
ADDONS = [("voice", "voice-20"), ("sms", "sms-75"), ("automate", "automate-100")]
METERS = ["helpdesk_tickets"] * 6 + ["voice_tickets", "sms_tickets", "automated_interactions"]


def recreate_database() -> None:
    measure.database_create(DB_NAME)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)


def populate(
    accounts: int, charges: int, history_months: int, history_charges: int, late_share: float = 0
) -> float:
    """Accounts with subscriptions that started on Oct 1 (or `history_months` before, with
    `history_charges` charge rows over those months, each month closed in turn), their
    invoices so far, and the period's charge rows, written with COPY (the setup is not what is
    measured); with `late_share`, that share of the accounts has a ticket of the month before
    counted late (F6: its period moved, the close reads its history). Returns how long
    folding the period's per-day counters took."""
    import django

    django.setup()
    from django.db import connection

    from accounts.models import Account, Partner
    from bench.history import history_fill
    from billing.run import run_billing
    from metering import partitions
    from metering.services import usage_days_fold
    from plans.catalog import catalog_load
    from plans.models import AddOn, AddOnTier, Plan, Subscription, SubscriptionAddOn

    if partitions.is_partitioned("metering_charge"):
        # October's month, as beat's daily job would have made it while October was ahead.
        partitions.partitions_ensure(now=START)
    catalog_load()
    rng = random.Random(7)
    first = partitions.month_add(START, -history_months)
    partner = Partner.objects.create(name="bench")
    Account.objects.bulk_create(
        [
            Account(
                slug=f"acct-{n}",
                name=f"Account {n}",
                billing_email=f"b{n}@bench.example",
                partner=partner,
            )
            for n in range(accounts)
        ],
        batch_size=5000,
    )
    ids = list(Account.objects.order_by("pk").values_list("pk", flat=True))
    plans = {p.code: p for p in Plan.objects.all()}
    # Each subscription in its first month: the history's closes advance it a month at a
    # time up to the measured one (a first version set the end to END, so the history was
    # one usage period of 25 months that the measured close counted from its first month).
    first_end = partitions.month_add(first, 1)
    subscriptions = [
        Subscription(
            account_id=account_id,
            plan=plans[rng.choice(PLANS)],
            interval="month",
            billing_anchor=first,
            current_period_start=first,
            current_period_end=first_end,
            usage_period_start=first,
            usage_period_end=first_end,
            started_at=first,
        )
        for account_id in ids
    ]
    Subscription.objects.bulk_create(subscriptions, batch_size=5000)
    tiers = {(t.addon.code, t.code): t for t in AddOnTier.objects.select_related("addon")}
    addons = {a.code: a for a in AddOn.objects.all()}
    items = []
    for subscription in Subscription.objects.all():
        for code, tier in ADDONS:
            if rng.random() < 0.3:
                items.append(
                    SubscriptionAddOn(
                        subscription=subscription,
                        addon=addons[code],
                        tier=tiers[(code, tier)],
                        started_at=first,
                    )
                )
    SubscriptionAddOn.objects.bulk_create(items, batch_size=5000)
    if history_months:
        history_fill(
            account_ids=ids,
            before=START,
            months=history_months,
            charges=history_charges,
            events=False,
        )
    run_billing(as_of=first)  # the first invoices (P1), so that what is timed is the close alone
    for month in range(1, history_months + 1):
        run_billing(as_of=partitions.month_add(first, month))  # the history's closes
    span = int((END - START).total_seconds()) - 1
    previous = partitions.month_add(START, -1)
    late = [
        (account_id, "ticket", f"L{n}", "helpdesk_tickets", 1, "final")
        + (previous + timedelta(days=20), previous, '["H1"]', START, START + timedelta(days=2))
        for n, account_id in enumerate(ids[: round(accounts * late_share)])
    ]
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            "COPY metering_charge (account_id, subject_kind, subject, meter, unit, status, "
            "billable_at, period_start, rules, evaluated_at, recorded_at) FROM STDIN"
        ) as copy,
    ):
        for n in range(charges):
            at = START + timedelta(seconds=rng.randrange(span))
            copy.write_row(
                (
                    ids[n % accounts],
                    "ticket",
                    f"T{n}",
                    rng.choice(METERS),
                    1,
                    "final",
                    at,
                    START,
                    '["H1"]',
                    at,
                    at,
                )
            )
        for row in late if history_months else []:
            copy.write_row(row)
    # The month's charges arrived in one COPY, so the per-day counters hold one appended
    # batch for the whole month: folded here, as the 5-minute fold would have done as they
    # came, and vacuumed, as autovacuum would have. Folded in each run instead, that fold
    # (111,040 rows, 1.2 s) left the close a table of dead rows to walk and, with two years
    # behind, evicted the month's charges from PostgreSQL's cache between the baseline and
    # the close (docs/performance.md, "The close's growth").
    fold_started = time.perf_counter()
    usage_days_fold()
    fold = time.perf_counter() - fold_started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return fold


def sql_baseline(database: str) -> tuple[float, int]:
    import psycopg

    with psycopg.connect(f"{PG}/{database}") as conn:
        started = time.perf_counter()
        rows = conn.execute(
            "SELECT account_id, meter, count(*) FROM metering_charge "
            "WHERE period_start = %s AND status = 'final' GROUP BY account_id, meter",
            [START],
        ).fetchall()
        return time.perf_counter() - started, len(rows)


def run_once(database: str, accounts: int) -> dict:
    """One measured close on a fresh copy of the prepared database."""
    from django.db import connection, connections

    from billing.models import Invoice, UsageClose
    from billing.run import run_billing

    connections.close_all()  # a template database must have no connection
    measure.database_create(database, template=DB_NAME)
    connection.settings_dict["NAME"] = database  # Django connects to the copy from here on
    sql_baseline(database)  # once to warm the copy's cache, as run_billing finds it
    # The best of three: a fresh copy's first minutes hold its checkpoint and autovacuum, which
    # made single measurements of the same query move 66 to 205 ms.
    baseline, groups = min(sql_baseline(database) for _ in range(3))
    connection.ensure_connection()
    database_before, worker_before = measure.backends_cpu(database), measure.own_cpu()
    started = time.perf_counter()
    run = run_billing(as_of=END)
    elapsed = time.perf_counter() - started
    worker = measure.own_cpu() - worker_before
    database_cpu = measure.backends_spent(database_before, measure.backends_cpu(database))
    # The measured month's closes, whatever the history closed before it.
    closed = UsageClose.objects.filter(period_start=START, period_end=END)
    closes = closed.count()
    overage = (
        Invoice.objects.filter(usage_close__in=closed, lines__kind="overage").distinct().count()
    )
    connections.close_all()
    connection.settings_dict["NAME"] = DB_NAME
    measure.database_drop(database)
    if closes != accounts:
        raise SystemExit(f"{closes} of {accounts} accounts had the measured month closed")
    invoices = len(run.invoices)
    return {
        "invoices": invoices,
        "overage": overage,
        "seconds": elapsed,
        "rate": invoices / elapsed,
        "baseline_ms": baseline * 1000,
        "groups": groups,
        "ratio": elapsed / baseline,
        "worker_us": worker * 1e6 / invoices,
        "db_us": database_cpu * 1e6 / invoices,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--charges", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--history-months",
        type=int,
        default=0,
        help="Months closed before the measured one (24: two years of history).",
    )
    parser.add_argument(
        "--history-charges",
        type=int,
        default=10_000_000,
        help="Charge rows spread over those months (with --history-months).",
    )
    parser.add_argument(
        "--late-share",
        type=float,
        default=0,
        help="Share of the accounts with a late ticket of the month before (with history).",
    )
    args = parser.parse_args()
    recreate_database()
    try:
        setup_started = time.perf_counter()
        fold = populate(
            args.accounts,
            args.charges,
            args.history_months,
            args.history_charges,
            args.late_share,
        )
        setup = time.perf_counter() - setup_started
        runs = [run_once(f"{DB_NAME}_run", args.accounts) for _ in range(args.runs)]
    finally:
        from django.db import connections

        connections.close_all()
        measure.database_drop(f"{DB_NAME}_run")
        measure.database_drop(DB_NAME)
    first = runs[0]
    late = f", {args.late_share:.0%} of the accounts with a late ticket" if args.late_share else ""
    print(
        f"{args.accounts:,} accounts, {args.charges:,} charge rows (setup {setup:.0f} s); "
        + (
            f"behind them {args.history_months} closed months with "
            f"{args.history_charges:,} charge rows{late}; "
            if args.history_months
            else ""
        )
        + f"{first['invoices']:,} invoices issued per run, {first['overage']:,} with overage; "
        f"the period's per-day counters folded once, before the runs, in {fold:.1f} s"
    )
    measure.print_runs(
        runs,
        [
            ("", "run", str),
            ("run_billing s", "seconds", "{:.2f}".format),
            ("invoices/s", "rate", "{:,.0f}".format),
            ("baseline ms", "baseline_ms", "{:,.0f}".format),
            ("run / baseline", "ratio", "{:,.1f}×".format),
            ("worker µs/inv", "worker_us", "{:,.0f}".format),
            ("db µs/inv", "db_us", "{:,.0f}".format),
        ],
        key="ratio",
    )
    print(
        f"baseline: one SQL aggregate, count(*) GROUP BY account, meter over the period's "
        f"charges ({first['groups']:,} groups); CPU µs per invoice: worker = this process "
        "running run_billing, db = PostgreSQL's backend serving it"
    )


if __name__ == "__main__":
    main()
