"""Load run: usage events at a steady rate with a spike, through gunicorn with several workers
and a Celery re-evaluation worker, checked for loss and duplication.

An open-loop client: batch k leaves at its scheduled time whatever happened to the batches
before it, so a slow server shows as latency, not as a lower offered rate. Acceptance latency
is measured from the batch's scheduled time to its 202 (it includes any wait for a free client
connection), and separately from send to answer. A 429 is waited out (`Retry-After`) and sent
again; a dropped connection is sent again (the event ids make that safe). At the end every
acknowledged event must be stored once, and the resident memory of each server process,
sampled every few seconds, is printed first / peak / last.

    .venv/bin/python bench/load.py [--rate 2000] [--duration 600] [--spike-rate 10000]
        [--spike-duration 60] [--web-workers 4]

Its database is bench_load (or BENCH_DB), dropped and made anew; Redis db 13 (or BENCH_REDIS).
"""

import argparse
import contextlib
import http.client
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("BENCH_DB", "bench_load")
os.environ.setdefault("BENCH_REDIS", "redis://127.0.0.1:6379/13")
os.environ.setdefault("BENCH_PORT", "8766")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base  # noqa: E402 - reads the BENCH_* variables set above


def schedule(args) -> list[float]:
    """Departure time of every batch, in seconds from the start."""
    spike_at = (args.duration - args.spike_duration) / 2
    times, t = [], 0.0
    while t < args.duration:
        times.append(t)
        spiking = spike_at <= t < spike_at + args.spike_duration
        t += args.batch / (args.spike_rate if spiking else args.rate)
    return times


def batch_body(index: int, size: int, slugs: list[str]) -> tuple[bytes, list[str]]:
    """Pairs of events (a customer's message, an agent's reply) on new tickets."""
    at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    events = []
    for n in range(size):
        seq = index * size + n
        slug = slugs[(seq // 2) % len(slugs)]
        events.append(
            {
                "id": f"load-{seq}",
                "account": slug,
                "type": "message",
                "ticket": f"load-t{seq // 2}",
                "occurred_at": at,
                "channel": "email",
                "author": "customer" if seq % 2 == 0 else "agent",
            }
        )
    return json.dumps({"events": events}).encode(), [e["id"] for e in events]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def processes(root_pid: int) -> list[int]:
    """A process and its descendants, from /proc."""
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):  # it ended meanwhile
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="Steady events/s.")
    parser.add_argument("--duration", type=float, default=600, help="Seconds in all.")
    parser.add_argument("--spike-rate", type=float, default=10_000, help="Events/s in the spike.")
    parser.add_argument("--spike-duration", type=float, default=60, help="Seconds of spike.")
    parser.add_argument("--batch", type=int, default=100, help="Events per request.")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent connections.")
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--reeval-workers", type=int, default=2)
    args = parser.parse_args()

    (base.ROOT / "var").mkdir(exist_ok=True)
    base.recreate_database()
    raw_key, _, _ = base.prepare(args.accounts, 0, 0, 0)
    slugs = [f"bench-{n}" for n in range(args.accounts)]
    import redis

    redis.Redis.from_url(base.REDIS).flushdb()
    bin_dir = Path(sys.executable).parent
    web = base.start(
        [
            str(bin_dir / "gunicorn"),
            "billing_portal.wsgi",
            "-b",
            f"127.0.0.1:{base.PORT}",
            "-w",
            str(args.web_workers),
            "--log-level",
            "warning",
        ],
        str(base.ROOT / "var" / "load-gunicorn.log"),
        base.ENV,
    )
    worker = base.start(
        base.celery_command(args.reeval_workers, loglevel="warning"),
        str(base.ROOT / "var" / "load-celery.log"),
        base.ENV,
    )
    departures = schedule(args)
    next_batch = iter(range(len(departures)))
    lock = threading.Lock()
    totals = {"429": 0, "5xx": 0, "dropped": 0, "4xx": 0}
    acked: set[str] = set()
    accept_latency: list[float] = []
    service_latency: list[float] = []
    memory: dict[int, list[float]] = {}
    try:
        base.wait_for_http()
        started = time.perf_counter()
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(5):
                for root in (web.pid, worker.pid):
                    for pid in processes(root):
                        if (mb := rss_mb(pid)) is not None:
                            memory.setdefault(pid, []).append(mb)

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", base.PORT, timeout=60)
            headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
            while True:
                with lock:
                    index = next(next_batch, None)
                if index is None:
                    return
                due = started + departures[index]
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                body, ids = batch_body(index, args.batch, slugs)
                while True:
                    sent = time.perf_counter()
                    try:
                        conn.request("POST", "/api/v1/events", body=body, headers=headers)
                        response = conn.getresponse()
                        response.read()
                    except OSError:
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", base.PORT, timeout=60)
                        with lock:
                            totals["dropped"] += 1
                        continue
                    done = time.perf_counter()
                    if response.status == 202:
                        with lock:
                            acked.update(ids)
                            accept_latency.append(done - due)
                            service_latency.append(done - sent)
                        break
                    kind = "429" if response.status == 429 else f"{response.status // 100}xx"
                    with lock:
                        totals[kind] = totals.get(kind, 0) + 1
                    if response.status == 429:
                        time.sleep(float(response.getheader("Retry-After") or 1))
                    elif response.status < 500:
                        break  # refused for good: counted, not retried
                    else:
                        time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent_for = time.perf_counter() - started
        drained_at = time.perf_counter()
        while base.queue_length(base.DB_NAME) > 0 and time.perf_counter() - drained_at < 600:
            time.sleep(0.5)
        drain = time.perf_counter() - drained_at
        sampling.set()
        sampler.join()
    finally:
        web.terminate()
        worker.terminate()
        web.wait()
        worker.wait()

    import psycopg

    with psycopg.connect(f"{base.PG}/{base.DB_NAME}") as conn:
        stored, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (account_id, event_id)) FROM metering_event "
            "WHERE event_id LIKE 'load-%'"
        ).fetchone()
        stored_ids = {
            row[0]
            for row in conn.execute(
                "SELECT event_id FROM metering_event WHERE event_id LIKE 'load-%'"
            )
        }
    offered = len(departures) * args.batch
    lost = len(acked - stored_ids)
    ms = 1000
    rows = [
        (
            "offered",
            f"{offered:,} events in {len(departures):,} batches of {args.batch} over "
            f"{args.duration:.0f} s: {args.rate:,.0f}/s, spike {args.spike_rate:,.0f}/s for "
            f"{args.spike_duration:.0f} s; {args.clients} connections",
        ),
        ("sent for", f"{sent_for:.1f} s ({offered / sent_for:,.0f} events/s achieved)"),
        ("acknowledged (202)", f"{len(acked):,}"),
        ("stored", f"{stored:,} ({stored - distinct} duplicated, {lost} acknowledged lost)"),
        (
            "acceptance latency",
            f"p50 {percentile(accept_latency, 50) * ms:,.0f} ms, "
            f"p99 {percentile(accept_latency, 99) * ms:,.0f} ms, "
            f"max {max(accept_latency, default=0) * ms:,.0f} ms (from the scheduled departure)",
        ),
        (
            "request latency",
            f"p50 {percentile(service_latency, 50) * ms:,.0f} ms, "
            f"p99 {percentile(service_latency, 99) * ms:,.0f} ms, "
            f"max {max(service_latency, default=0) * ms:,.0f} ms (send to answer)",
        ),
        ("answers not 202", ", ".join(f"{k}: {v}" for k, v in totals.items())),
        ("re-evaluation drain", f"{drain:.1f} s after the last batch"),
        ("web workers", f"{args.web_workers} (gunicorn), re-evaluation {args.reeval_workers}"),
    ]
    for label, value in rows:
        print(f"{label:<22}{value}")
    print("resident memory (MB) per process: first, peak, last; samples every 5 s")
    for pid, samples in sorted(memory.items()):
        if samples:
            growth = samples[-1] - samples[0]
            try:
                role = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:60]
            except OSError:
                role = b"(ended)"
            print(
                f"  pid {pid:<8}{samples[0]:7.1f} {max(samples):7.1f} {samples[-1]:7.1f}"
                f"   ({growth:+.1f} MB over {len(samples)} samples)  "
                + role.decode(errors="replace")
            )
            # Whether growth levels off: the peak of each fifth of the run.
            n = len(samples)
            fifths = [samples[n * k // 5 : n * (k + 1) // 5] for k in range(5)]
            print("    peak by fifth of the run: " + " ".join(f"{max(f):.1f}" for f in fifths if f))
    if lost or stored != distinct or len(acked) != offered:
        raise SystemExit("events were lost, duplicated or never acknowledged")


if __name__ == "__main__":
    main()
