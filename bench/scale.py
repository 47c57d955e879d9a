"""Benchmark: how re-evaluation scales with worker processes (1, 2, 4 on this machine).

The work that grows with traffic is re-evaluating the tickets and sessions that new events touch
(the `ingest` queue). This stores a backlog of simulated events once, without any worker, keeps
that database as a template, then for each worker count copies the template (PostgreSQL
`CREATE DATABASE … TEMPLATE`, so every run drains the very same backlog), starts one Celery
worker with that many processes, and times the queue from full to empty. Each line prints the
throughput beside the ideal (the one-process figure times the count) and the machine's cores:
past the core count the ideal cannot be met on one machine, which is what more hosts are for.

    .venv/bin/python bench/scale.py [--events 100000] [--accounts 50] [--workers 1,2,4]

Databases bench_scale_base and bench_scale_run (or BENCH_DB as the prefix), Redis db 13 (or
BENCH_REDIS).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
PREFIX = os.environ.get("BENCH_DB", "bench_scale")
os.environ["BENCH_DB"] = f"{PREFIX}_base"
os.environ.setdefault("BENCH_REDIS", "redis://127.0.0.1:6379/13")

import ingest  # noqa: E402 - after the environment it reads is set

RUN_DB = f"{PREFIX}_run"


def backlog_store(accounts: int, events: int) -> tuple[int, int]:
    """Store the events in the template database with no worker running: the subjects they
    touch wait in the re-evaluation queue. Returns (events, subjects)."""
    _, _, batches = ingest.prepare(accounts, events)  # sets Django up
    from django.db import connection

    from accounts.models import Account
    from metering import services

    stored = 0
    # Each batch also sends "drain now" to the broker; no worker listens yet, and the broker is
    # flushed before each run: the queue that counts is the table.
    for batch in batches:
        result = services.events_ingest(
            raw_events=batch, accounts=Account.objects.all(), fixed_account=None
        )
        stored += result.accepted
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metering_reevaluation")
        subjects = cursor.fetchone()[0]
    connection.close()
    return stored, subjects


def database_copy() -> None:
    import psycopg

    with psycopg.connect(f"{ingest.PG}/postgres", autocommit=True) as conn:
        # The template must have no connection open while it is copied.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (f"{PREFIX}_base",),
        )
        conn.execute(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {RUN_DB} TEMPLATE {PREFIX}_base")


def queue_length() -> int:
    import psycopg

    with psycopg.connect(f"{ingest.PG}/{RUN_DB}") as conn:
        return conn.execute("SELECT count(*) FROM metering_reevaluation").fetchone()[0]


def drain_with(processes: int) -> float:
    """Seconds for one worker with `processes` processes to empty the copied queue."""
    import redis

    database_copy()
    redis.Redis.from_url(ingest.REDIS).flushdb()
    env = {**ingest.ENV, "DATABASE_URL": f"{ingest.PG}/{RUN_DB}"}
    celery = str(Path(sys.executable).parent / "celery")
    worker = subprocess.Popen(
        [celery, "-A", "billing_portal", "worker", "-Q", "ingest", "-c", str(processes)]
        + ["--loglevel", "warning"],
        cwd=ROOT,
        env=env,
        stdout=open(ROOT / "var" / "bench-scale-celery.log", "a"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3)  # the worker's processes up before the clock starts
        from metering.tasks import reevaluate_pending_task

        started = time.perf_counter()
        for _ in range(processes):  # one draining task per process; they claim disjoint batches
            reevaluate_pending_task.delay()
        while queue_length() > 0:
            if time.perf_counter() - started > 1800:
                raise SystemExit("the queue did not drain in 30 minutes")
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    (ROOT / "var").mkdir(exist_ok=True)
    ingest.recreate_database()
    events, subjects = backlog_store(args.accounts, args.events)
    print(f"backlog: {events:,} events, {subjects:,} subjects; {os.cpu_count()} cores")
    header = ("processes", "seconds", "subjects/s", "events/s", "ideal", "of ideal")
    print(" ".join(f"{h:>11}" for h in header))
    single = None
    for processes in counts:
        seconds = drain_with(processes)
        rate = subjects / seconds
        single = single or rate / processes
        ideal = single * processes
        print(
            f"{processes:>11} {seconds:>11.1f} {rate:>11,.0f} {events / seconds:>11,.0f} "
            f"{ideal:>11,.0f} {rate / ideal:>11.0%}"
        )


if __name__ == "__main__":
    main()
