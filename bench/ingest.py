"""Benchmark: usage events per second through the HTTP API into PostgreSQL, end to end.

What runs, all on this machine: gunicorn serving the portal, one Celery worker (Redis broker)
re-evaluating the touched tickets and sessions, PostgreSQL, and a client posting batches of
1,000 simulated events from a few threads. "End to end" stops the clock when the last batch is
stored AND the re-evaluation queue is empty, so re-evaluation has to keep up to score well.

The baseline, measured in the same run on the same rows: PostgreSQL `COPY FROM STDIN` into a
bare table with the event columns — the fastest way those rows can reach the database at all.

    .venv/bin/python bench/ingest.py [--events 200000] [--accounts 50] [--clients 3]

It uses its own database (bench_ingest, or BENCH_DB; dropped and made anew) and Redis db 14
(or BENCH_REDIS): give each concurrent run its own.
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
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
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
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=ENV, check=True)


def prepare(accounts: int, events: int) -> tuple[str, list[bytes], list[list]]:
    """Accounts, a partner key, and pre-encoded batches (the client must not be the bottleneck)."""
    import django

    django.setup()
    from accounts import services as account_services
    from metering import simulator
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


def copy_baseline(batches: list[list]) -> float:
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
    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
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


def queue_length() -> int:
    import psycopg

    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
        return conn.execute("SELECT count(*) FROM metering_reevaluation").fetchone()[0]


def start(cmd: list[str], log: str) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=ENV,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
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
        "--rate",
        type=float,
        help="Pace the client at this many events/s (default: as fast as it can).",
    )
    args = parser.parse_args()

    ENV["SPIKE_GUARD_LOOPS"] = "true" if args.spike_guard == "on" else "false"
    (ROOT / "var").mkdir(exist_ok=True)
    recreate_database()
    raw_key, bodies, batches = prepare(args.accounts, args.events)
    events = sum(len(b) for b in batches)
    copy_rate = copy_baseline(batches)

    import redis

    redis.Redis.from_url(REDIS).flushdb()
    bin_dir = Path(sys.executable).parent
    web = start(
        [
            str(bin_dir / "gunicorn"),
            "billing_portal.wsgi",
            "-b",
            f"127.0.0.1:{PORT}",
            "-w",
            str(args.web_workers),
            "--log-level",
            "warning",
        ],
        str(ROOT / "var" / "bench-gunicorn.log"),
    )
    worker = start(
        [
            str(bin_dir / "celery"),
            "-A",
            "billing_portal",
            "worker",
            "-Q",
            "ingest",
            "-c",
            str(args.reeval_workers),
            "--loglevel",
            "warning",
        ],
        str(ROOT / "var" / "bench-celery.log"),
    )
    try:
        wait_for_http()
        lags: list[tuple[float, int]] = []
        sampling = True

        def sample() -> None:
            t0 = time.perf_counter()
            while sampling:
                lags.append((time.perf_counter() - t0, queue_length()))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        ingest_seconds, accepted, errors = post_all(raw_key, bodies, args.clients, args.rate)
        stored_at = time.perf_counter()
        while queue_length() > 0 and time.perf_counter() - stored_at < 600:
            time.sleep(0.1)
        end_to_end = time.perf_counter() - started
        sampling = False
        sampler.join()
    finally:
        web.terminate()
        worker.terminate()
        web.wait()
        worker.wait()

    import psycopg

    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
        charges = conn.execute("SELECT count(*) FROM metering_charge").fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM metering_event").fetchone()[0]
    drain = end_to_end - ingest_seconds
    thirds = [
        [q for t, q in lags if k * ingest_seconds / 3 <= t < (k + 1) * ingest_seconds / 3]
        for k in range(3)
    ]
    means = ", ".join(f"{sum(q) / max(len(q), 1):,.0f}" for q in thirds)
    rows = [
        (
            "events posted",
            f"{events:,} in {len(bodies)} batches of <= 1,000, {args.clients} clients",
        ),
        ("events stored", f"{stored:,} (accepted {accepted:,}, HTTP errors {errors})"),
        ("charge rows written", f"{charges:,}"),
        ("HTTP ingest", f"{events / ingest_seconds:,.0f} events/s ({ingest_seconds:.1f} s)"),
        ("end to end (queue empty)", f"{events / end_to_end:,.0f} events/s ({end_to_end:.1f} s)"),
        ("queue drain after ingest", f"{drain:.1f} s"),
        ("raw COPY baseline", f"{copy_rate:,.0f} rows/s"),
        ("end to end / COPY", f"{events / end_to_end / copy_rate:.1%}"),
        ("re-evaluation workers", f"{args.reeval_workers}"),
        ("loop detector", args.spike_guard),
    ]
    for label, value in rows:
        print(f"{label:<26}{value}")
    print(
        f"{'re-evaluation queue':<26}max {max((q for _, q in lags), default=0):,} subjects; "
        f"mean by third of the ingest: {means}"
    )
    if args.rate:
        print(f"{'paced at':<26}{args.rate:,.0f} events/s")
    if errors or stored != events:
        raise SystemExit("some batches failed: see var/bench-gunicorn.log")


if __name__ == "__main__":
    main()
