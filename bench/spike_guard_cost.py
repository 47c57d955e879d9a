"""Benchmark: what the loop detector (metering.holds, SPIKE_GUARD_LOOPS) adds to re-evaluation.

Re-evaluates every ticket of an ingest bench's database (run bench/ingest.py first; its
database is kept until its next run) in batches of 2,000, with the detector off then on,
alternating, several rounds; each batch in a transaction rolled back, so every pass sees the
same rows, and with the tickets' verdicts and origins deleted first, so each is counted for
the first time, as at ingest (the only time the detector looks at a ticket).

On a loaded machine the ingest bench's end-to-end figure moves by a third between
runs of the same code; this isolates the one step the detector changes and takes the best
round of each, so the cost is read to a few percent.

    .venv/bin/python bench/spike_guard_cost.py [--rounds 5]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
os.environ["DATABASE_URL"] = f"{PG}/{os.environ.get('BENCH_DB', 'bench_ingest')}"
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 50)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from metering import event_store, services
    from metering.models import Charge, SubjectKind

    subjects = sorted(
        Charge.objects.filter(subject_kind=SubjectKind.TICKET)
        .values_list("account_id", "subject_kind", "subject")
        .distinct()
    )
    batches = [subjects[i : i + args.batch] for i in range(0, len(subjects), args.batch)]
    as_of = timezone.now()
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for loops in (False, True):
            settings.SPIKE_GUARD_LOOPS = loops
            started = time.perf_counter()
            for batch in batches:
                with transaction.atomic():
                    # As at first ingest: no earlier verdict, no origin recorded, so every
                    # ticket is counted for the first time (the detector's worst case).
                    event_store.delete_charges(batch)
                    with connection.cursor() as cursor:  # no dead rows left, as at ingest
                        cursor.execute("TRUNCATE metering_ticket_origin")
                    services.reevaluate(subjects=batch, as_of=as_of)
                    transaction.set_rollback(True)
            seconds[loops].append(time.perf_counter() - started)
    off, on = min(seconds[False]), min(seconds[True])
    per = 1e6 / len(subjects)
    print(
        f"{'tickets re-evaluated':<28}{len(subjects):,} in {len(batches)} batches, "
        f"{args.rounds} rounds each way"
    )
    print(
        f"{'detector off (best, median)':<28}{off:.2f} s, {statistics.median(seconds[False]):.2f} s"
        f"  ({off * per:.0f} µs per ticket)"
    )
    print(
        f"{'detector on (best, median)':<28}{on:.2f} s, {statistics.median(seconds[True]):.2f} s"
        f"  ({on * per:.0f} µs per ticket)"
    )
    print(f"{'detector cost':<28}{(on - off) / off:+.1%} of re-evaluation (best rounds)")


if __name__ == "__main__":
    main()
