"""Chaos cases for money: Stripe failing at random, webhooks duplicated and shuffled, periods
closed concurrently (charges killed at every point of the charge path are in
test_worker_chaos.py). Each case repeats (`conftest.repetitions`) and reports its counts; every
Stripe call goes through the fault proxy (tests/stripe_proxy.py), which keeps Stripe's
idempotency semantics."""

import json
import os
import queue
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import stripe
import time_machine
from django.test import Client
from django.utils import timezone

from billing import closing, payments, run, webhooks
from billing.models import Invoice, InvoiceStatusChange, PaymentAttempt
from billing.reconcile import ledger_compare
from tests.billing.test_money_safety import card, in_threads, issued_unpaid, opened
from tests.billing.test_payments import DECLINED, OK, THREE_DS

from .conftest import repetitions

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def everywhere():
    """A range holding our clock (perhaps moved) and the stand-in's real one."""
    ours = timezone.now()
    hatch = time_machine.escape_hatch
    real = datetime.fromtimestamp(hatch.time.time() if hatch.is_travelling() else time.time(), UTC)
    return min(ours, real, T0) - timedelta(days=2), max(ours, real) + timedelta(days=400)


def succeeded_per_invoice(stripe_standin) -> Counter:
    return Counter(
        i.metadata["invoice"] for i in stripe_standin.intents() if i.status == "succeeded"
    )


def sweep_until_settled(*, rounds: int = 60) -> int:
    """The sweeper every 6 minutes (past IN_FLIGHT_TIMEOUT) until nothing is left unanswered
    or uncollected; returns how many sweeps it took."""
    as_of = datetime.now(UTC)
    for n in range(1, rounds + 1):
        as_of += payments.IN_FLIGHT_TIMEOUT + timedelta(minutes=1)
        with time_machine.travel(as_of, tick=False):  # staleness is judged by the wall clock
            run.collect_due(as_of=as_of)
        unanswered = PaymentAttempt.objects.filter(status__in=payments.IN_FLIGHT).exists()
        if not unanswered and not payments.collectable_invoice_ids():
            return n
    raise AssertionError(f"still unsettled after {rounds} sweeps")


def assert_gapless_numbers() -> list[str]:
    """Invoice numbers run 1, 2, 3, ... within each year, with no gap and no repeat."""
    numbers = sorted(Invoice.objects.exclude(number=None).values_list("number", flat=True))
    by_year: dict[str, list[int]] = {}
    for number in numbers:
        year, n = number.split("-")
        by_year.setdefault(year, []).append(int(n))
    for year, ns in by_year.items():
        assert ns == list(range(1, len(ns) + 1)), (year, ns)
    return numbers


# --- Stripe failing at random -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_stripe_failing_30_percent_and_losing_5_percent_pays_each_invoice_once(
    make_account, stripe_standin, settings, chaos_report
):
    count = repetitions("flaky_invoices", fast=12, full=2000)
    issued_unpaid(make_account, stripe_standin, slugs=[f"f{n}" for n in range(count)])
    settings.STRIPE_TIMEOUT_SECONDS = 1
    stripe_standin.proxy.chaos(
        seed=int(os.environ.get("CHAOS_SEED", "14")),
        rates={503: 0.08, 500: 0.06, 429: 0.08, "reset": 0.08, "lost": 0.05},
    )
    sweeps = sweep_until_settled()
    stripe_standin.proxy.chaos(seed=0, rates={})
    # The comparison lists every intent, a slow call against the stand-in at full count: with
    # the 1-second timeout of the chaos above it timed out (2,000 invoices, 2 Dec 2026).
    settings.STRIPE_TIMEOUT_SECONDS = 15
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    per_invoice = succeeded_per_invoice(stripe_standin)
    assert sorted(per_invoice.values()) == [1] * count, per_invoice
    assert ledger_compare(since=everywhere()[0], until=everywhere()[1]) == []
    injected = stripe_standin.proxy.injected
    chaos_report(
        "Stripe failing at random",
        invoices=count,
        calls=sum(1 for path, _ in stripe_standin.proxy.keys if path == "/v1/payment_intents"),
        faults=dict(injected),
        paid_once=sum(1 for c in per_invoice.values() if c == 1),
        ledger_differences=0,
        sweeps=sweeps,
    )


# --- webhooks duplicated, shuffled, in parallel ------------------------------------------------


def scenario(make_account, stripe_standin, prefix: str) -> list[Invoice]:
    """Three invoices whose outcome only webhooks can tell us: paid (answer lost), declined
    then paid (the second answer lost), waiting for 3-D Secure (answer lost)."""
    proxy = stripe_standin.proxy
    paid, retried, secure = (opened(make_account, f"{prefix}-{kind}") for kind in "prs")
    card(paid, stripe_standin)
    card(retried, stripe_standin, DECLINED)
    card(secure, stripe_standin, THREE_DS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(payments, "collectable_invoice_ids", lambda **kwargs: [])
        run.run_billing(as_of=T0)
    invoices = {i.account_id: i for i in Invoice.objects.filter(account__slug__startswith=prefix)}
    proxy.fail_next("lost")
    payments.invoice_collect(invoice_id=invoices[paid.pk].pk)
    payments.invoice_collect(invoice_id=invoices[retried.pk].pk)  # declined, recorded
    card(retried, stripe_standin, OK)
    proxy.fail_next("lost")
    payments.invoice_charge(invoice_id=invoices[retried.pk].pk, trigger="retry")
    proxy.fail_next("lost")
    payments.invoice_collect(invoice_id=invoices[secure.pk].pk)
    return [invoices[a.pk] for a in (paid, retried, secure)]


def deliveries(invoices: list[Invoice], stripe_standin) -> list[dict]:
    """Stripe's events for these invoices' intents, in the order Stripe sent them."""
    numbers = {i.number for i in invoices}
    kinds = {
        "succeeded": "payment_intent.succeeded",
        "requires_action": "payment_intent.requires_action",
        "requires_payment_method": "payment_intent.payment_failed",
    }
    found = [i for i in stripe_standin.intents() if i.metadata.to_dict().get("invoice") in numbers]
    events = []
    for intent in sorted(found, key=lambda i: (i.created, i.id)):
        obj = {"id": intent.id, "object": "payment_intent", "metadata": intent.metadata.to_dict()}
        events.append({"type": "payment_intent.created", "data": {"object": obj}})
        events.append({"type": kinds[intent.status], "data": {"object": obj}})
    for n, event in enumerate(events):
        event["id"] = f"evt_{events[0]['data']['object']['id']}_{n}"
    return events


def deliver(event: dict, secret: str) -> int:
    payload = json.dumps(event)
    now = int(time.time())
    signed = stripe.WebhookSignature._compute_signature(f"{now}.{payload}", secret)
    response = Client().post(
        "/stripe/webhooks/",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=f"t={now},v1={signed}",
    )
    return response.status_code


def final_state(invoices: list[Invoice]) -> list:
    state = []
    for invoice in invoices:
        invoice.refresh_from_db()
        attempts = [a.status for a in invoice.attempts.order_by("number")]
        state.append((invoice.status, attempts))
    return state


@pytest.mark.django_db(transaction=True)
def test_webhooks_delivered_1_to_3_times_shuffled_to_4_receivers_converge(
    make_account, stripe_standin, settings, chaos_report
):
    seeds = repetitions("webhook_seeds", fast=2, full=200)
    secret = settings.STRIPE_WEBHOOK_SECRET
    delivered = statuses = 0
    for seed in range(seeds):
        rng = random.Random(seed)
        # Each seed finds its events by listing the stand-in's intents: emptied first, so that
        # the listing stays one seed's size (at 200 seeds it grew into the hour otherwise).
        stripe_standin.flush()
        ordered = scenario(make_account, stripe_standin, f"o{seed}")
        shuffled = scenario(make_account, stripe_standin, f"s{seed}")
        for event in deliveries(ordered, stripe_standin):
            assert deliver(event, secret) == 200
        expected = final_state(ordered)
        assert [s for s, _ in expected] == ["paid", "paid", "requires_confirmation"], expected
        work: queue.Queue = queue.Queue()
        batch = [e for e in deliveries(shuffled, stripe_standin) for _ in range(rng.randint(1, 3))]
        rng.shuffle(batch)
        for event in batch:
            work.put(event)
        codes: list = []

        def receiver(i, work=work, codes=codes):
            while True:
                try:
                    event = work.get_nowait()
                except queue.Empty:
                    return
                codes.append(deliver(event, secret))

        in_threads(4, receiver)
        # What a receiver's broker lost, the sweep processes.
        webhooks.stripe_events_retry(as_of=timezone.now() + timedelta(minutes=2))
        assert codes == [200] * len(batch)
        assert final_state(shuffled) == expected, (seed, final_state(shuffled), expected)
        # reconcile_stripe's checks, on this seed's invoices (the stand-in holds only its intents).
        numbers = {i.number for i in ordered + shuffled}
        differences = ledger_compare(since=everywhere()[0], until=everywhere()[1])
        assert [d for d in differences if d.invoice in numbers] == [], seed
        delivered += len(batch)
        statuses += len(shuffled)
    reverted = InvoiceStatusChange.objects.filter(from_status="paid").count()
    assert reverted == 0
    chaos_report(
        "webhooks duplicated and shuffled",
        seeds=seeds,
        deliveries=delivered,
        invoices=statuses,
        differing_from_in_order=0,
        paid_reverted=reverted,
    )


# --- concurrent closes --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_closes_issue_one_invoice_per_period_with_gapless_numbers(
    make_account, chaos_report
):
    rounds = repetitions("close_rounds", fast=3, full=200)
    subscriptions = 4
    for n in range(subscriptions):
        opened(make_account, f"c{n}")
    run.run_billing(as_of=T0)
    month = T0
    raised = 0
    for _ in range(rounds):
        month = (month + timedelta(days=32)).replace(day=1)
        results = in_threads(10, lambda i, at=month: closing.close_all(as_of=at))
        raised += sum(isinstance(r, Exception) for r in results)
        assert not [r for r in results if isinstance(r, Exception)], results
    closes = Counter(
        Invoice.objects.filter(reason="period_close").values_list("account_id", "period_start")
    )
    assert len(closes) == subscriptions * rounds and set(closes.values()) == {1}
    numbers = assert_gapless_numbers()
    chaos_report(
        "concurrent closes",
        rounds=rounds,
        closers=10,
        subscriptions=subscriptions,
        invoices=len(numbers),
        duplicates=sum(c - 1 for c in closes.values()),
        number_gaps=0,
        errors=raised,
    )
