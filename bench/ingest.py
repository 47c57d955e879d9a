"""Benchmark: usage events per second through the HTTP API into PostgreSQL, end to end.

What runs, all on this machine: gunicorn serving the portal, one Celery worker (Redis broker)
re-evaluating the touched tickets and sessions, PostgreSQL, and a client posting batches of
1,000 simulated events from a few threads. "End to end" stops the clock when the last batch is
stored AND the re-evaluation queue is empty, so re-evaluation has to keep up to score well.

The baseline, measured in the same run on the same rows: PostgreSQL `COPY FROM STDIN` into a
bare table with the event columns — the fastest way those rows can reach the database at all
(the best of three COPYs, right before the run's ingest).

    .venv/bin/python bench/ingest.py [--events 200000] [--accounts 50] [--clients 3]
                                     [--evaluation none]

`--evaluation none` runs drainers in place of the Celery workers (`bench/drain_only.py`): they
claim and clear the queue as workers do and evaluate nothing, so the figure is what the ingest
path alone allows on this machine, the ceiling for any way of re-evaluating.

It runs three times (`--runs`) and prints each run and the median (by end to end / COPY), with
the CPU time per event of each component: the web (gunicorn and its workers), the database
(PostgreSQL's backends serving the bench's database) and the re-evaluation workers (Celery).
The data is prepared once in its own database (bench_ingest, or BENCH_DB), and each run works
on a fresh copy of it; every database it made is dropped at the end. Redis db 14 (or
BENCH_REDIS), port 8765 (or BENCH_PORT): give each concurrent bench its own.
"""

import argparse
import http.client
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import measure  # noqa: E402

PG = measure.PG
DB_NAME = os.environ.get("BENCH_DB", "bench_ingest")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")
PORT = int(os.environ.get("BENCH_PORT", "8765"))
ENV = {
    **os.environ,
    "DATABASE_URL": f"{PG}/{DB_NAME}",
    "CELERY_BROKER_URL": REDIS,
    "DEBUG": "false",
    "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
    "CONN_MAX_AGE": "600",
    "DATA_UPLOAD_MAX_MEMORY_SIZE": str(20 * 1024 * 1024),
}
os.environ.update(ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")


def recreate_database() -> None:
    measure.database_create(DB_NAME)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=ENV, check=True)


def prepare(
    accounts: int, events: int, history_months: int, history_charges: int
) -> tuple[str, list[bytes], list[list]]:
    """Accounts, a partner key, and pre-encoded batches (the client must not be the bottleneck);
    with `history_months`, that many months of past tickets behind the accounts
    (`history_charges` of them, each with its event and charge)."""
    import django

    django.setup()
    from accounts import services as account_services
    from bench.history import history_fill
    from metering import partitions, simulator
    from plans import services as plan_services
    from plans.catalog import catalog_load

    catalog_load()
    partner = account_services.partner_get_or_create(name="bench")
    now = datetime.now(UTC)
    since = now - timedelta(days=20)
    slugs = []
    for n in range(accounts):
        slug = f"bench-{n}"
        plan_services.account_open(
            slug=slug,
            name=slug,
            billing_email=f"{slug}@bench.example",
            currency="USD",
            plan_code="pro",
            interval="month",
            partner=partner,
            period_start=since,
            addons=[
                plan_services.AddOnChoice(addon="voice", tier="voice-250"),
                plan_services.AddOnChoice(addon="convert", tier="convert-750"),
            ],
        )
        slugs.append(slug)
    if history_months:
        from accounts.models import Account

        history_fill(
            account_ids=list(Account.objects.filter(slug__in=slugs).values_list("pk", flat=True)),
            before=partitions.month_add(since, 0),
            months=history_months,
            charges=history_charges,
            events=True,
        )
    _, raw_key = account_services.api_key_create(partner=partner, name="bench")
    per_account = max(1, events // accounts * 10 // 22)  # about 2.2 events per story
    stream = []
    for n, slug in enumerate(slugs):
        for event in simulator.generate(
            tickets=per_account, since=since, now=now, seed=n, prefix=slug, profile="black_friday"
        ):
            event["account"] = slug
            stream.append(event)
    stream = stream[:events]
    # Interleave accounts the way a helpdesk's stream does: events arrive in time order.
    stream.sort(key=lambda e: e["occurred_at"])
    batches = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    return raw_key, [json.dumps({"events": b}).encode() for b in batches], batches


def copy_baseline(database: str, batches: list[list]) -> float:
    """Rows per second of raw COPY of the same rows into a bare table with the same columns."""
    import psycopg

    now = datetime.now(UTC)
    rows = [
        (
            1,
            e["id"],
            e["type"],
            e["occurred_at"],
            now,
            e.get("ticket"),
            e.get("session"),
            e.get("customer"),
            e.get("channel"),
            e.get("author"),
            json.dumps(e),
        )
        for batch in batches
        for e in batch
    ]
    with psycopg.connect(f"{PG}/{database}") as conn:
        conn.execute(
            "CREATE TABLE bench_copy (account_id bigint, event_id text, type text, "
            "occurred_at timestamptz, received_at timestamptz, ticket text, session text, "
            "customer text, channel text, author text, attrs jsonb)"
        )
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_copy FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return len(rows) / elapsed


def queue_length(database: str) -> int:
    import psycopg

    with psycopg.connect(f"{PG}/{database}") as conn:
        return conn.execute("SELECT count(*) FROM metering_reevaluation").fetchone()[0]


def celery_command(workers: int, *, loglevel: str) -> list[str]:
    """The re-evaluation workers as the deployment runs them: the `ingest` queue."""
    celery = str(Path(sys.executable).parent / "celery")
    worker = ["-A", "billing_portal", "worker", "-Q", "ingest", "-c", str(workers)]
    return [celery, *worker, "--loglevel", loglevel]


def start(cmd: list[str], log: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
    )


def wait_for_http() -> None:
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
            conn.request("GET", "/login/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start (see var/bench-gunicorn.log)")


def post_all(
    raw_key: str, bodies: list[bytes], clients: int, rate: float | None
) -> tuple[float, int, int]:
    """Post every batch; with `rate` (events/s), batch i leaves no earlier than i × 1000 / rate."""
    work: queue.Queue = queue.Queue()
    for index, body in enumerate(bodies):
        work.put((index, body))
    totals = {"accepted": 0, "duplicates": 0, "errors": 0}
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
        while True:
            try:
                index, body = work.get_nowait()
            except queue.Empty:
                return
            if rate:
                delay = started + index * 1000 / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            conn.request("POST", "/api/v1/events", body=body, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read())
            with lock:
                if response.status != 202:
                    totals["errors"] += 1
                else:
                    totals["accepted"] += payload["accepted"]
                    totals["duplicates"] += payload["duplicates"]

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, totals["accepted"], totals["errors"]


def run_once(args, database: str, raw_key: str, bodies: list[bytes], batches: list[list]) -> dict:
    """One measured run on a fresh copy of the prepared database: COPY baseline, then the
    portal's web and workers started, every batch posted, the clock stopped once the
    re-evaluation queue is empty."""
    import redis

    measure.database_create(database, template=DB_NAME)
    events = sum(len(b) for b in batches)
    # The best of three: single COPYs of the same rows moved 133k to 214k rows/s between runs.
    copy_rate = max(copy_baseline(database, batches) for _ in range(3))
    redis.Redis.from_url(REDIS).flushdb()
    env = {**ENV, "DATABASE_URL": f"{PG}/{database}"}
    bin_dir = Path(sys.executable).parent
    celery_log = ROOT / "var" / "bench-celery.log"
    web = start(
        [
            str(bin_dir / "gunicorn"),
            "-c",  # the deployment's own settings; the bench sets the address and workers
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "billing_portal.wsgi",
            "-b",
            f"127.0.0.1:{PORT}",
            "-w",
            str(args.web_workers),
            "--log-level",
            "warning",
        ],
        str(ROOT / "var" / "bench-gunicorn.log"),
        env,
    )
    # "info" for the workers' "ready" line: the clock starts once they are up. With
    # --evaluation none, drainers that clear the queue as workers would, evaluating nothing.
    celery = celery_command(args.reeval_workers, loglevel="info")
    drainers = [sys.executable, str(ROOT / "bench" / "drain_only.py"), str(args.reeval_workers)]
    worker = start(celery if args.evaluation == "full" else drainers, str(celery_log), env)
    try:
        wait_for_http()
        wait_for_celery(celery_log)
        lags: list[tuple[float, int]] = []
        sampling = True

        def sample() -> None:
            t0 = time.perf_counter()
            while sampling:
                lags.append((time.perf_counter() - t0, queue_length(database)))
                time.sleep(0.5)

        cpu_before = (
            measure.tree_cpu(web.pid),
            measure.tree_cpu(worker.pid),
            measure.backends_cpu(database),
        )
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        ingest_seconds, accepted, errors = post_all(raw_key, bodies, args.clients, args.rate)
        stored_at = time.perf_counter()
        while queue_length(database) > 0 and time.perf_counter() - stored_at < 600:
            time.sleep(0.1)
        end_to_end = time.perf_counter() - started
        sampling = False
        sampler.join()
        cpu_after = (
            measure.tree_cpu(web.pid),
            measure.tree_cpu(worker.pid),
            measure.backends_cpu(database),
        )
    finally:
        web.terminate()
        worker.terminate()
        web.wait()
        worker.wait()

    import psycopg

    with psycopg.connect(f"{PG}/{database}") as conn:
        charges = conn.execute(
            "SELECT count(*) FROM metering_charge WHERE subject NOT LIKE 'hist-%'"
        ).fetchone()[0]
        stored = conn.execute(
            "SELECT count(*) FROM metering_event WHERE event_id NOT LIKE 'hist-%'"
        ).fetchone()[0]
        # Each evaluation that finished clears its subject's queue row, except one whose
        # subject was re-marked meanwhile (handed back, cleared by the next): about how often
        # subjects were evaluated. Whether a burst gathers a subject's events in the queue
        # shows here (measured: 0.46-0.48 an event in a burst, 0.49-0.58 paced).
        cleared = conn.execute(
            "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'metering_reevaluation'"
        ).fetchone()[0]
    measure.database_drop(database)
    if errors or stored != events:
        raise SystemExit("some batches failed: see var/bench-gunicorn.log")
    thirds = [
        [q for t, q in lags if k * ingest_seconds / 3 <= t < (k + 1) * ingest_seconds / 3]
        for k in range(3)
    ]
    per_event = 1e6 / events
    return {
        "events": events,
        "accepted": accepted,
        "charges": charges,
        "http": events / ingest_seconds,
        "end_to_end": events / end_to_end,
        "drain": end_to_end - ingest_seconds,
        "copy": copy_rate,
        "ratio": events / end_to_end / copy_rate,
        "web_us": (cpu_after[0] - cpu_before[0]) * per_event,
        "workers_us": (cpu_after[1] - cpu_before[1]) * per_event,
        "db_us": measure.backends_spent(cpu_before[2], cpu_after[2]) * per_event,
        "queue_max": max((q for _, q in lags), default=0),
        "evaluations": cleared / events,
        "queue_thirds": [sum(q) / max(len(q), 1) for q in thirds],
    }


def wait_for_celery(log: Path) -> None:
    for _ in range(300):
        if log.exists() and " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise SystemExit(f"the Celery worker did not start (see {log})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--history-months",
        type=int,
        default=0,
        help="Months of past tickets behind the accounts (24: two years of history).",
    )
    parser.add_argument(
        "--history-charges",
        type=int,
        default=10_000_000,
        help="Past tickets over those months, each with its event and charge row.",
    )
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--reeval-workers", type=int, default=2)
    parser.add_argument(
        "--spike-guard",
        choices=["on", "off"],
        default="on",
        help="The loop detector at ingest (SPIKE_GUARD_LOOPS): off measures what it costs.",
    )
    parser.add_argument(
        "--evaluation",
        choices=["full", "none"],
        default="full",
        help="none: the workers clear the queue without evaluating (bench/drain_only.py), "
        "to measure the ingest path with re-evaluation free.",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="Pace the client at this many events/s (default: as fast as it can).",
    )
    args = parser.parse_args()

    ENV["SPIKE_GUARD_LOOPS"] = "true" if args.spike_guard == "on" else "false"
    (ROOT / "var").mkdir(exist_ok=True)
    recreate_database()
    try:
        raw_key, bodies, batches = prepare(
            args.accounts, args.events, args.history_months, args.history_charges
        )
        from django.db import connections

        connections.close_all()  # a template database must have no connection
        runs = [
            run_once(args, f"{DB_NAME}_run", raw_key, bodies, batches) for _ in range(args.runs)
        ]
    finally:
        measure.database_drop(f"{DB_NAME}_run")
        measure.database_drop(DB_NAME)
    first = runs[0]
    print(
        f"{first['events']:,} events in {len(bodies)} batches of <= 1,000, {args.clients} "
        f"clients; {args.web_workers} web workers, {args.reeval_workers} re-evaluation workers; "
        f"loop detector {args.spike_guard}"
        + (
            f"; behind them {args.history_months} months with {args.history_charges:,} past "
            "tickets (event and charge each)"
            if args.history_months
            else ""
        )
        + (f"; paced at {args.rate:,.0f} events/s" if args.rate else "")
        + (
            "; NO EVALUATION: the workers only clear the queue (bench/drain_only.py)"
            if args.evaluation == "none"
            else ""
        )
    )
    print(f"charge rows written: {first['charges']:,}")
    whole = "{:,.0f}".format
    micro = "{:,.1f}".format
    measure.print_runs(
        runs,
        [
            ("", "run", str),
            ("HTTP ev/s", "http", whole),
            ("end-to-end ev/s", "end_to_end", whole),
            ("COPY rows/s", "copy", whole),
            ("e2e / COPY", "ratio", "{:.1%}".format),
            ("drain s", "drain", "{:.1f}".format),
            ("web µs/ev", "web_us", micro),
            ("db µs/ev", "db_us", micro),
            ("workers µs/ev", "workers_us", micro),
            ("queue max", "queue_max", whole),
            ("evals/ev", "evaluations", "{:.2f}".format),
        ],
        key="ratio",
    )
    thirds = ", ".join(f"{q:,.0f}" for q in measure.median_run(runs, "ratio")["queue_thirds"])
    print(f"re-evaluation queue of the median run, mean by third of the ingest: {thirds} subjects")
    print("evals/ev: subject evaluations finished (queue rows cleared) per event")
    print(
        "CPU µs per event: web = gunicorn and its workers, db = PostgreSQL's backends for the "
        "bench's database, workers = the Celery re-evaluation workers"
    )


if __name__ == "__main__":
    main()
