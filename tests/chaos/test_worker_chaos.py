"""Chaos cases for the charge path through a real Celery worker (prefork, 3 pool processes,
queue `payments`, the test's Redis as broker, the test's database and clock), as production runs
it: pool processes killed at each point of the charge path, and the whole worker killed at random
moments and restarted. Whatever the kills leave, the sweeper settles: every invoice paid, one
succeeded payment at Stripe each, the ledger equal to Stripe."""

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from billing import payments
from billing.models import Invoice, PaymentAttempt
from billing.reconcile import ledger_compare
from billing.tasks import payment_collect_invoice
from tests.billing.test_money_safety import issued_unpaid
from tests.chaos.kill_points import POINTS, clock_env
from tests.chaos.test_money_chaos import everywhere, succeeded_per_invoice, sweep_until_settled
from tests.metering.helpers import redis_broker
from tests.metering.test_celery_redis import REDIS_URL

from .conftest import repetitions

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")
POOL_PROCESSES = 3
# Invoices enqueued per planned kill of the whole worker: enough that the queue still holds work
# at the last kill (each life charges a few before it is killed; what it held is left to the
# sweep).
INVOICES_PER_KILL = 15


def real_time() -> float:
    """The real clock's epoch seconds, even while --clock moves ours."""
    hatch = time_machine.escape_hatch
    return hatch.time.time() if hatch.is_travelling() else time.time()


def worker_env(settings, stripe_standin, **extra: str) -> dict[str, str]:
    """What the worker needs to share the test's world: its database, broker, Stripe (through
    the fault proxy), secret key and clock."""
    db = connection.settings_dict
    login = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return os.environ | {
        "DATABASE_URL": f"postgres://{login}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "STRIPE_API_BASE": stripe_standin.proxy.url,
        "STRIPE_API_KEY": "sk_test_standin",
        **clock_env(timezone.now(), real_time()),
        **extra,
    }


class Worker:
    """A `celery worker` process in a session of its own, so that one SIGKILL to its process
    group takes its pool processes with it (as an OOM kill or a lost host would)."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [CELERY, "-A", "tests.chaos.celery_worker", "worker", "--pool", "prefork"]
                + ["--concurrency", str(POOL_PROCESSES), "--queues", "payments"]
                + ["--without-gossip", "--without-mingle", "--without-heartbeat"]
                + ["--hostname", f"chaos-{os.getpid()}@%h", "--loglevel", "INFO"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        # The group, even if the main process is gone: its pool processes may still run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_for(
        self, condition: Callable[[], bool], *, timeout: float, what: Callable[[], str]
    ) -> None:
        """Until `condition()`; fails saying `what()` (as it stands then) and the log's end."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the worker exited ({self.process.returncode}) before {what()}; "
                    f"its log ends:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what()} within {timeout:.0f} s; the worker's log ends:\n"
                    + self.log_tail()
                )
            time.sleep(0.1)


@contextmanager
def running_worker(env: dict[str, str], log: Path) -> Iterator[Worker]:
    """A worker killed (SIGKILL, whole group) on the way out, whatever happened inside."""
    worker = Worker(env, log)
    try:
        yield worker
    finally:
        worker.kill()


@pytest.fixture
def broker():
    """The test's Redis, empty, as the broker of this process's tasks (not run in-process)."""
    with redis_broker(REDIS_URL) as client:
        yield client


def enqueue_charges(broker, invoices: list[Invoice]) -> None:
    for invoice in invoices:
        payment_collect_invoice.delay(invoice.pk)
    assert broker.llen("payments") == len(invoices)  # routed to the payments queue, waiting


def assert_dated_on_our_clock() -> None:
    """The worker's attempts are dated on this process's clock (moved by --clock or not), not
    on the real one: the sweep's five-minute timeout is measured between the two."""
    now = timezone.now()
    for created_at in PaymentAttempt.objects.values_list("created_at", flat=True):
        assert abs(created_at - now) < timedelta(minutes=10), (created_at, now)


def assert_each_invoice_paid_once(stripe_standin, invoices: list[Invoice]) -> dict:
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    per_invoice = succeeded_per_invoice(stripe_standin)
    assert sorted(per_invoice.values()) == [1] * len(invoices), per_invoice
    assert ledger_compare(since=everywhere()[0], until=everywhere()[1]) == []
    return per_invoice


# --- pool processes killed at each point of the charge path -----------------------------------


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_killed_at_each_point_of_the_charge_path_never_charges_twice(
    point, make_account, stripe_standin, settings, broker, tmp_path, chaos_report
):
    runs = repetitions("worker_kills", fast=2, full=50)
    issued_unpaid(make_account, stripe_standin, slugs=[f"w{n}" for n in range(runs)])
    invoices = list(Invoice.objects.all())
    enqueue_charges(broker, invoices)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = worker_env(settings, stripe_standin, CHAOS_KILL_POINT=point, CHAOS_MARK_DIR=str(marks))
    with running_worker(env, tmp_path / "worker.log") as worker:
        # Each charge kills its pool process at the point; the pool starts another, armed too.
        worker.wait_for(
            lambda: len(list(marks.iterdir())) >= runs,
            timeout=60 + 3 * runs,
            what=lambda: f"{runs} charges killed {point} (markers: {len(list(marks.iterdir()))})",
        )
    assert_dated_on_our_clock()
    # What the kills left, before any sweep: the point is where we meant it to be.
    charged = sum(succeeded_per_invoice(stripe_standin).values())
    paid = Invoice.objects.filter(status="paid").count()
    assert charged == (0 if point == "after_claim" else runs), (point, charged)
    assert paid == (runs if point == "after_commit" else 0), (point, paid)
    sweeps = sweep_until_settled()
    per_invoice = assert_each_invoice_paid_once(stripe_standin, invoices)
    assert PaymentAttempt.objects.count() == runs
    chaos_report(
        f"Celery worker's pool processes SIGKILLed {point}",
        kills=len(list(marks.iterdir())),
        double_charges=sum(c - 1 for c in per_invoice.values()),
        unpaid_after_sweep=Invoice.objects.exclude(status="paid").count(),
        sweeps=sweeps,
    )


# --- the whole worker killed at random moments and restarted ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_whole_celery_worker_killed_at_random_moments_charges_each_invoice_once(
    make_account, stripe_standin, settings, broker, tmp_path, chaos_report
):
    kills = repetitions("worker_group_kills", fast=2, full=20)
    seed = int(os.environ.get("CHAOS_WORKER_SEED", "14"))
    rng = random.Random(seed)
    count = INVOICES_PER_KILL * kills
    issued_unpaid(make_account, stripe_standin, slugs=[f"g{n}" for n in range(count)])
    invoices = list(Invoice.objects.all())
    enqueue_charges(broker, invoices)
    env = worker_env(settings, stripe_standin)
    killed = 0
    for life in range(kills):
        assert broker.llen("payments"), f"the batch ran out after {killed} of {kills} kills"
        started = PaymentAttempt.objects.count()
        with running_worker(env, tmp_path / f"worker-{life}.log") as worker:
            # The moment is random, but after this life's first charge began, so that a kill
            # lands among charges rather than during the worker's start.
            worker.wait_for(
                lambda started=started: PaymentAttempt.objects.count() > started,
                timeout=90,
                what=lambda life=life: f"charge by worker life {life}",
            )
            time.sleep(rng.uniform(0.0, 1.5))
        killed += 1
    assert_dated_on_our_clock()
    by_workers = PaymentAttempt.objects.count()
    cut = PaymentAttempt.objects.filter(status__in=payments.IN_FLIGHT).count()
    sweeps = sweep_until_settled()
    per_invoice = assert_each_invoice_paid_once(stripe_standin, invoices)
    chaos_report(
        "whole Celery worker SIGKILLed and restarted",
        seed=seed,
        kills=killed,
        invoices=count,
        charges_started_by_workers=by_workers,
        cut_in_flight=cut,
        double_charges=sum(c - 1 for c in per_invoice.values()),
        sweeps=sweeps,
    )
