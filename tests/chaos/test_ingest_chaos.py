"""Chaos cases for usage and closes: every event sent twice and shuffled by 16 concurrent
clients, PostgreSQL connections terminated in the middle of ingest and of a close, and the
Redis broker restarted in the middle of ingest. A sender retries what was not acknowledged
(as the API asks); what was acknowledged must never be lost, and nothing counts twice."""

import json
import random
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from billing import closing, run
from billing.models import Invoice
from metering import services as metering_services
from metering.models import Charge, Event
from tests.billing.test_money_safety import in_threads, opened
from tests.chaos.test_money_chaos import assert_gapless_numbers
from tests.metering.helpers import celery_configured

from .conftest import repetitions

T0 = datetime(2026, 11, 1, tzinfo=UTC)
BATCH = 100


def ticket_events(slugs: list[str], tickets: int, rng: random.Random) -> list[dict]:
    """A customer message and an agent reply per ticket (one billable ticket each)."""
    at = timezone.now() - timedelta(hours=2)
    events = []
    for n in range(tickets):
        slug = slugs[n % len(slugs)]
        when = at + timedelta(seconds=rng.randint(0, 3600))
        for author, shift in (("customer", 0), ("agent", 30)):
            events.append(
                {
                    "id": f"{slug}-t{n}-{author}",
                    "account": slug,
                    "type": "message",
                    "ticket": f"t{n}",
                    "occurred_at": (when + timedelta(seconds=shift)).isoformat(),
                    "channel": "email",
                    "author": author,
                }
            )
    return events


class Sender:
    """16 clients posting batches through the WSGI app; a batch not answered 202 is sent again
    (the sender's contract), and what was acknowledged is remembered."""

    def __init__(self, key: str):
        self.key = key
        self.codes: Counter = Counter()
        self.acknowledged: set[str] = set()
        self.accepted = self.duplicates = 0
        self.lock = threading.Lock()

    def post(self, batch: list[dict]) -> None:
        client = Client(raise_request_exception=False)
        for _ in range(50):
            try:
                response = client.post(
                    "/api/v1/events",
                    json.dumps({"events": batch}),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {self.key}",
                )
                status = response.status_code
            except Exception as exc:  # a connection dropped under the request: not acknowledged
                status = f"{type(exc).__name__}: {exc}"[:300]
            with self.lock:
                self.codes[status] += 1
            if status == 202:
                body = response.json()
                with self.lock:
                    self.acknowledged.update(e["id"] for e in batch)
                    self.accepted += body["accepted"]
                    self.duplicates += body["duplicates"]
                return
            connection.close()
            time.sleep(0.05)
        raise AssertionError("a batch was never acknowledged")

    def send_all(self, batches: list[list[dict]], clients: int = 16) -> None:
        work = list(batches)
        lock = threading.Lock()

        def client(i):
            while True:
                with lock:
                    if not work:
                        return
                    batch = work.pop()
                self.post(batch)

        # The limit only catches a hang: it grows with the batches (the full count's 2,000 take
        # longer than the helper's default 120 s on a shared machine).
        results = in_threads(clients, client, timeout=120 + len(batches))
        assert not [r for r in results if isinstance(r, Exception)], results


def twice_shuffled(events: list[dict], rng: random.Random) -> list[list[dict]]:
    doubled = events + [dict(e) for e in events]
    rng.shuffle(doubled)
    return [doubled[i : i + BATCH] for i in range(0, len(doubled), BATCH)]


def stored_and_counted(slugs: list[str]) -> tuple[int, int]:
    connection.close()  # this thread's connection may have been terminated
    metering_services.reevaluate_all_pending(as_of=timezone.now())
    stored = Event.objects.filter(account__slug__in=slugs).count()
    counted = (
        Charge.objects.filter(account__slug__in=slugs, meter="helpdesk_tickets")
        .exclude(status="not_counted")
        .count()
    )
    return stored, counted


@pytest.fixture
def sender(make_account, partner):
    slugs = [f"ingest-{n}" for n in range(4)]
    # Opened a day back: the events are dated up to two hours ago, and ingest refuses events
    # from before an account's first subscription (before_subscription).
    opened = timezone.now() - timedelta(days=1)
    for slug in slugs:
        make_account(slug=slug, plan="pro", period_start=opened)
    _, key = account_services.api_key_create(partner=partner, name="chaos")
    return Sender(key), slugs


def no_broker():
    """Re-evaluation is queued to a broker no worker reads: it is drained at the end, as the
    sweep would, so the clients measure ingest alone."""
    from tests.metering.test_celery_redis import REDIS_URL

    return celery_configured(broker_url=REDIS_URL, task_always_eager=False)


@pytest.mark.django_db(transaction=True)
def test_events_sent_twice_shuffled_by_16_clients_are_stored_once(sender, chaos_report):
    client, slugs = sender
    tickets = repetitions("events", fast=1000, full=100_000) // 2  # 2 events a ticket
    rng = random.Random(14)
    events = ticket_events(slugs, tickets, rng)
    with no_broker():
        client.send_all(twice_shuffled(events, rng))
    stored, counted = stored_and_counted(slugs)
    assert client.codes == {202: len(twice_shuffled(events, random.Random(0)))}, client.codes
    assert stored == len(events) and client.accepted == len(events)
    assert client.duplicates == len(events)
    assert counted == tickets  # the independent count: one billable ticket per story
    chaos_report(
        "events sent twice, shuffled, 16 clients",
        events=len(events),
        posted=2 * len(events),
        stored=stored,
        tickets_billed=counted,
        independent_count=tickets,
        server_errors=sum(n for code, n in client.codes.items() if code != 202),
    )


def terminate_backends(*, times: int, every: float, stop: threading.Event) -> int:
    """pg_terminate_backend on the test database's other sessions, from a connection of its
    own, `times` times (or until stopped)."""
    import psycopg

    db = connection.settings_dict
    killed = 0
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as own:
        for _ in range(times):
            if stop.wait(every):
                break
            rows = own.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            killed += sum(1 for (done,) in rows if done)
    return killed


@pytest.mark.django_db(transaction=True)
def test_postgres_connections_terminated_during_ingest_lose_no_acknowledged_event(
    sender, chaos_report
):
    client, slugs = sender
    rounds = repetitions("pg_kills", fast=1, full=20)
    rng = random.Random(15)
    total_killed = 0
    all_events: list[dict] = []
    for r in range(rounds):
        events = ticket_events(slugs, 1000, rng)
        for event in events:
            event["id"] = f"r{r}-{event['id']}"
            event["ticket"] = f"r{r}-{event['ticket']}"
        all_events += events
        stop = threading.Event()
        killed: list[int] = []
        killer = threading.Thread(
            target=lambda killed=killed, stop=stop: killed.append(
                terminate_backends(times=40, every=0.05, stop=stop)
            )
        )
        with no_broker():
            killer.start()
            client.send_all(twice_shuffled(events, rng), clients=8)
            stop.set()
            killer.join()
        total_killed += killed[0]
    stored, counted = stored_and_counted(slugs)
    ids = set(Event.objects.filter(account__slug__in=slugs).values_list("event_id", flat=True))
    assert client.acknowledged <= ids  # nothing acknowledged was lost
    assert stored == len(all_events) and counted == len(all_events) // 2
    assert total_killed > 0, "no connection was terminated: the case proved nothing"
    chaos_report(
        "PostgreSQL connections terminated during ingest",
        rounds=rounds,
        backends_terminated=total_killed,
        acknowledged=len(client.acknowledged),
        lost=len(client.acknowledged - ids),
        stored=stored,
        retried_batches=sum(n for code, n in client.codes.items() if code != 202),
    )


@pytest.mark.django_db(transaction=True)
def test_postgres_connections_terminated_during_a_close_the_retry_completes_it(
    make_account, chaos_report
):
    rounds = repetitions("pg_close_rounds", fast=1, full=20)
    for n in range(4):
        opened(make_account, f"close-{n}")
    run.run_billing(as_of=T0)
    real = closing.claim._price_close
    month, killed, retries, interrupted = T0, 0, 0, 0
    for _ in range(rounds):
        month = (month + timedelta(days=32)).replace(day=1)
        pricing = threading.Event()

        def slow_price(*args, real=real, pricing=pricing):
            pricing.set()
            time.sleep(0.3)  # the close is in the middle of its work when the kill comes
            return real(*args)

        outcome: list = []
        with mock.patch.object(closing.claim, "_price_close", side_effect=slow_price):
            closer = threading.Thread(
                target=lambda at=month, outcome=outcome: outcome.extend(
                    in_threads(1, lambda i: closing.close_all(as_of=at))
                )
            )
            closer.start()
            assert pricing.wait(30)
            killed += terminate_backends(times=1, every=0.05, stop=threading.Event())
            closer.join(60)
        interrupted += sum(isinstance(r, Exception) for r in outcome)
        connection.close()
        for attempt in range(5):  # the sweep retries (set-aside subscriptions after backoff)
            at = month + timedelta(minutes=10 * (attempt + 1))
            closing.close_all(as_of=at)
            retries += 1
            if Invoice.objects.filter(reason="period_close", period_end=month).count() == 4:
                break
    closes = Counter(
        Invoice.objects.filter(reason="period_close").values_list("account_id", "period_start")
    )
    assert len(closes) == 4 * rounds and set(closes.values()) == {1}, closes
    assert_gapless_numbers()
    assert killed > 0
    chaos_report(
        "PostgreSQL connections terminated during a close",
        rounds=rounds,
        backends_terminated=killed,
        closes_interrupted=interrupted,
        closes=len(closes),
        duplicates=sum(c - 1 for c in closes.values()),
        retries=retries,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_start(port: int, data_dir) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            data_dir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
@pytest.mark.django_db(transaction=True)
def test_redis_restarted_during_ingest_loses_no_acknowledged_event(sender, tmp_path, chaos_report):
    client, slugs = sender
    rounds = repetitions("redis_restarts", fast=1, full=20)
    port = free_port()
    redis = redis_start(port, str(tmp_path))
    rng = random.Random(16)
    all_events: list[dict] = []
    restarts = 0
    try:
        with celery_configured(broker_url=f"redis://127.0.0.1:{port}/0", task_always_eager=False):
            for r in range(rounds):
                events = ticket_events(slugs, 300, rng)
                for event in events:
                    event["id"] = f"r{r}-{event['id']}"
                    event["ticket"] = f"r{r}-{event['ticket']}"
                all_events += events
                batches = twice_shuffled(events, rng)
                sending = threading.Thread(target=client.send_all, args=(batches, 8))
                sending.start()
                time.sleep(0.3)
                redis.kill()  # the broker dies with what it held
                redis.wait()
                time.sleep(0.3)
                redis = redis_start(port, str(tmp_path))
                restarts += 1
                sending.join(120)
    finally:
        redis.kill()
        redis.wait()
    stored, counted = stored_and_counted(slugs)
    ids = set(Event.objects.filter(account__slug__in=slugs).values_list("event_id", flat=True))
    assert client.acknowledged <= ids
    assert stored == len(all_events) and counted == len(all_events) // 2
    chaos_report(
        "Redis restarted during ingest",
        restarts=restarts,
        acknowledged=len(client.acknowledged),
        lost=len(client.acknowledged - ids),
        stored=stored,
        answers=dict(client.codes),
    )
