"""Benchmark: server time of the Billing & Usage overview and usage pages for one big account.

The account has 1,000,000 events in its current period (500,000 tickets, a customer message
and an agent reply each, so 500,000 ticket results, some still pending) and 24 closed periods
behind it, each with its invoice, its `UsageClose` row and 20,000 results. Events and results
are written with COPY (the setup is not what is measured). Timed: 50 requests to each page
through Django's test client, in process (no network), as the account's owner; median and
p95. The baseline, in the same run: one indexed SQL aggregate over the period's results,
`COUNT(*) … GROUP BY meter, status`, the least work that reads that usage at all (the pages
themselves read metering's per-day counters, `UsageDay`, which the COPY fills through its
triggers as re-evaluation's writes do).

    .venv/bin/python bench/page.py [--events 1000000] [--closed 24] [--requests 50] [--reuse]

`--reuse` times the pages again on the database a previous run left (no setup): on a shared
machine, to pair runs of two versions of the code within minutes of each other.

It uses its own database (bench_page, or BENCH_DB; dropped and made anew).
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("BENCH_DB", "bench_page")
os.environ.update(DATABASE_URL=f"{PG}/{DB_NAME}", DEBUG="false", CELERY_BROKER_URL="")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

ADDONS = [
    ("automate", "automate-300"),
    ("voice", "voice-250"),
    ("sms", "sms-250"),
    ("convert", "convert-750"),
]
METERS = ["helpdesk_tickets"] * 7 + ["voice_tickets", "sms_tickets", "automated_interactions"]
CLOSED_RESULTS = 20_000


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)


def _copy_charges(cursor, rng, account_id, start, end, count, first, pending_after=None):
    span = int((end - start).total_seconds()) - 1
    with cursor.cursor.copy(
        "COPY metering_charge (account_id, subject_kind, subject, meter, unit, status, "
        "billable_at, pending_until, period_start, rules, evaluated_at, recorded_at) FROM STDIN"
    ) as copy:
        for n in range(first, first + count):
            at = start + timedelta(seconds=rng.randrange(span))
            meter = rng.choice(METERS)
            pending = (
                pending_after is not None
                and meter == "automated_interactions"
                and at > pending_after
            )
            copy.write_row(
                (
                    account_id,
                    "ticket",
                    f"T{n}",
                    meter,
                    1,
                    "pending" if pending else "final",
                    at,
                    at + timedelta(hours=72) if pending else None,
                    start,
                    '["H1", "H2"]',
                    at,
                    at,
                )
            )


def populate(events: int, closed: int):
    """The account, opened `closed` months and 10 days ago, each period closed by run_billing."""
    import django

    django.setup()
    import time_machine
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Membership
    from billing.run import run_billing
    from plans import periods
    from plans import services as plan_services
    from plans.catalog import catalog_load

    catalog_load()
    rng = random.Random(7)
    now = timezone.now()
    anchor = periods.add_months(now - timedelta(days=10), -closed).replace(microsecond=0)
    with time_machine.travel(anchor, tick=False):
        account = plan_services.account_open(
            slug="big-shop",
            name="Big Shop",
            billing_email="billing@big.example",
            currency="USD",
            plan_code="pro",
            interval="month",
            addons=[plan_services.AddOnChoice(addon=a, tier=t) for a, t in ADDONS],
        )
        run_billing(as_of=anchor)
    user = get_user_model().objects.create_user("owner@big.example", password="bench")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    with connection.cursor() as cursor:
        for index in range(closed):
            start, end = periods.period_bounds(anchor, periods.MONTH, index)
            _copy_charges(cursor, rng, account.pk, start, end, CLOSED_RESULTS, index * 10**6)
            with time_machine.travel(end, tick=False):
                run_billing(as_of=end)
        start, end = periods.period_bounds(anchor, periods.MONTH, closed)
        tickets = events // 2
        span = int((now - start).total_seconds()) - 1
        with cursor.cursor.copy(
            "COPY metering_event (account_id, event_id, type, occurred_at, received_at, "
            "ticket, channel, author, attrs) FROM STDIN"
        ) as copy:
            for n in range(tickets):
                at = start + timedelta(seconds=rng.randrange(span))
                for suffix, author, offset in (("c", "customer", 0), ("a", "agent", 60)):
                    when = at + timedelta(seconds=offset)
                    copy.write_row(
                        (
                            account.pk,
                            f"e{n}{suffix}",
                            "message",
                            when,
                            when,
                            f"C{n}",
                            "email",
                            author,
                            "{}",
                        )
                    )
        _copy_charges(
            cursor, rng, account.pk, start, now, tickets, 10**8, pending_after=now - timedelta(3)
        )
    # What autovacuum would have done to a table this size: statistics and a visibility map.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE metering_charge")
        cursor.execute("VACUUM ANALYZE metering_event")
    return account, user, start


def existing():
    """The account, its owner and its current period, as a previous run left them."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from accounts.models import Account

    account = Account.objects.get(slug="big-shop")
    user = get_user_model().objects.get(username="owner@big.example")
    return account, user, account.subscriptions.get(ended_at__isnull=True).usage_period_start


def sql_baseline(account_id: int, start: datetime) -> float:
    import psycopg

    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            conn.execute(
                "SELECT meter, status, count(*) FROM metering_charge "
                "WHERE account_id = %s AND period_start = %s GROUP BY meter, status",
                [account_id, start],
            ).fetchall()
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)


def time_page(client, path: str, requests: int) -> tuple[float, float]:
    client.get(path)  # warm: templates compiled, connection open
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--closed", type=int, default=24)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--reuse", action="store_true", help="time the pages on the last data")
    args = parser.parse_args()
    setup_started = time.perf_counter()
    if args.reuse:
        account, user, start = existing()
    else:
        recreate_database()
        account, user, start = populate(args.events, args.closed)
    setup = time.perf_counter() - setup_started

    from django.test import Client

    from billing.models import UsageClose
    from metering.models import Charge, Event, UsageDay

    client = Client()
    client.force_login(user)
    baseline = sql_baseline(account.pk, start)
    rows = [
        (
            "account",
            f"{Event.objects.filter(account=account, occurred_at__gte=start).count():,} events "
            f"this period, {Charge.objects.filter(account=account).count():,} results, "
            f"{UsageClose.objects.filter(subscription__account=account).count()} closed periods "
            f"(setup {setup:.0f} s)",
        ),
        (
            "per-day counters",
            f"{UsageDay.objects.filter(account=account).count():,} UsageDay rows for the account, "
            f"{UsageDay.objects.filter(account=account, period_start=start).count()} this period",
        ),
        ("indexed SQL baseline", f"{baseline * 1000:.1f} ms (median of 5)"),
    ]
    for name, path in (("overview", "/billing/big-shop/"), ("usage", "/billing/big-shop/usage/")):
        median, p95 = time_page(client, path, args.requests)
        rows.append(
            (
                f"{name} page",
                f"median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms over {args.requests} "
                f"requests = {median / baseline:.1f}× the baseline",
            )
        )
    for label, value in rows:
        print(f"{label:<22}{value}")


if __name__ == "__main__":
    main()
