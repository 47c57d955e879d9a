"""Benchmark: what the per-day usage counters (UsageDay, kept by triggers on metering_charge)
cost re-evaluation's writes.

Re-evaluation swaps a batch's charge rows with two statements: `DELETE … RETURNING` of the
subjects' rows and a `COPY` of the new verdicts (metering.event_store). This times exactly
those statements — batches of 2,000 subjects re-written in a table already holding 200,000
charges — with the triggers enabled and disabled (`ALTER TABLE … DISABLE TRIGGER USER`),
interleaved, every round rolled back so each starts from the same rows.

    .venv/bin/python bench/charge_writes.py [--rounds 6] [--batches 10]

It uses its own database (bench_charge_writes, or BENCH_DB; dropped and made anew).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("BENCH_DB", "bench_charge_writes")
os.environ.update(DATABASE_URL=f"{PG}/{DB_NAME}", DEBUG="false", CELERY_BROKER_URL="")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

COLUMNS = (
    "account_id, subject_kind, subject, meter, unit, status, billable_at, pending_until, "
    "period_start, rules, evaluated_at, recorded_at"
)
METERS = ["helpdesk_tickets"] * 7 + ["voice_tickets", "sms_tickets", "automated_interactions"]
BATCH = 2000
EXISTING = 200_000


def setup() -> tuple[int, object]:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from plans import services as plan_services
    from plans.catalog import catalog_load

    catalog_load()
    account = plan_services.account_open(
        slug="writes",
        name="Writes",
        billing_email="billing@writes.example",
        currency="USD",
        plan_code="pro",
        interval="month",
        addons=[],
    )
    return account.pk, account.subscriptions.get().usage_period_start


def main() -> None:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    account_id, start = setup()
    rng = random.Random(1)
    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
        with conn.cursor().copy(f"COPY metering_charge ({COLUMNS}) FROM STDIN") as copy:
            for n in range(EXISTING):
                at = start + timedelta(seconds=rng.randrange(25 * 86400))
                row = (account_id, "ticket", f"T{n}", rng.choice(METERS), 1, "final", at, None)
                copy.write_row((*row, start, '["H1"]', at, at))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE metering_charge")
        conn.autocommit = False
        subjects = [f"T{n}" for n in rng.sample(range(EXISTING), BATCH * args.batches)]
        timings: dict[str, list[float]] = {"on": [], "off": []}
        for round_ in range(args.rounds):
            for mode in ("on", "off") if round_ % 2 else ("off", "on"):
                if mode == "off":
                    conn.execute("ALTER TABLE metering_charge DISABLE TRIGGER USER")
                started = time.perf_counter()
                for b in range(args.batches):
                    chunk = subjects[b * BATCH : (b + 1) * BATCH]
                    rows = conn.execute(
                        "DELETE FROM metering_charge c USING unnest(%s::bigint[], %s::text[], "
                        "%s::text[]) AS s(a, k, x) WHERE c.account_id = s.a "
                        "AND c.subject_kind = s.k AND c.subject = s.x "
                        f"RETURNING {', '.join('c.' + c for c in COLUMNS.split(', '))}",
                        [[account_id] * len(chunk), ["ticket"] * len(chunk), chunk],
                    ).fetchall()
                    with conn.cursor().copy(f"COPY metering_charge ({COLUMNS}) FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row((*r[:9], json.dumps(r[9]), *r[10:]))
                timings[mode].append(time.perf_counter() - started)
                conn.rollback()  # the trigger switch and the rows alike
    rewritten = BATCH * args.batches
    for mode, values in timings.items():
        median = statistics.median(values)
        print(
            f"triggers {mode:<4}{rewritten:,} charges deleted and re-written, batches of "
            f"{BATCH:,}: median {median * 1000:.0f} ms = {rewritten / median:,.0f} rows/s "
            f"over {len(values)} rounds"
        )
    cost = statistics.median(timings["on"]) / statistics.median(timings["off"]) - 1
    print(f"cost of the triggers  {cost:+.1%} on these statements")


if __name__ == "__main__":
    main()
