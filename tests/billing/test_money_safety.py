"""Money safety: each invoice charged at most once under concurrency and faults, every issued
invoice collected, credits netted, and one subscription's bad data never stopping the others.

Stripe calls go through the idempotency proxy (tests/stripe_proxy.py), which answers repeated
keys as Stripe does, so a re-send that would double-charge in production double-charges here."""

import threading
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from accounts import services as account_services
from billing import closing, gateway, payments, run, tasks, webhooks
from billing.invoicing import credit_note_issue
from billing.models import (
    AccountCredit,
    CloseSetAside,
    Invoice,
    PaymentAttempt,
    StripeEvent,
)
from billing.run import run_billing
from metering.models import Charge
from tests.billing.test_payments import OK, not_charged_by_run_billing
from tests.metering.helpers import ingest

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def card(account, stripe_standin, number=OK):
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(number))


def opened(make_account, slug, **kwargs):
    with time_machine.travel(T0, tick=False):
        return make_account(slug=slug, **kwargs)


def issued_unpaid(make_account, stripe_standin, slugs=("shop",)):
    """Accounts with a good card and their first invoice issued, not yet charged."""
    accounts = [opened(make_account, slug) for slug in slugs]
    for account in accounts:
        card(account, stripe_standin)
    with not_charged_by_run_billing():
        run_billing(as_of=T0)
    return accounts


def succeeded(stripe_standin) -> list:
    return [i for i in stripe_standin.intents() if i.status == "succeeded"]


def in_threads(n: int, work, *, timeout: float = 120) -> list:
    """Run `work(i)` in n threads at once; returns what each returned or raised. Fails when a
    thread is still running after `timeout` seconds (it would go on writing into the next
    test)."""
    results: list = [None] * n
    start = threading.Barrier(n)

    def body(i):
        try:
            start.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0))
    running = sum(thread.is_alive() for thread in threads)
    assert not running, f"{running} of {n} threads still running after {timeout:.0f} s"
    return results


# --- at most once ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_F5_twenty_concurrent_api_retries_make_exactly_one_payment_intent(
    make_account, stripe_standin, partner
):
    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    _, key = account_services.api_key_create(partner=partner, name="race")
    stripe_standin.proxy.delay = 0.3  # Stripe takes its time: the clicks overlap

    def retry(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client.post(f"/api/v1/invoices/{invoice.pk}/retry")

    responses = in_threads(20, retry)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 1 and codes.count(409) == 19, codes
    refused = [r.json()["error"] for r in responses if r.status_code == 409]
    # A thread the scheduler starts after the charge finished finds the invoice paid
    # (`nothing_to_charge`): also a refusal, never a second charge.
    assert {e["code"] for e in refused} <= {"payment_in_progress", "conflict", "nothing_to_charge"}
    assert any("already in progress" in e["message"] for e in refused)
    assert len(stripe_standin.intents()) == 1 and len(succeeded(stripe_standin)) == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.attempts.count() == 1


@pytest.mark.django_db(transaction=True)
def test_F5_twenty_concurrent_retry_clicks_charge_once(make_account, stripe_standin, client):
    from django.contrib.auth import get_user_model

    from accounts.models import Membership

    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    user = get_user_model().objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=shop, role=Membership.Role.OWNER)
    stripe_standin.proxy.delay = 0.3

    def click(i):
        from django.test import Client

        browser = Client()
        browser.force_login(user)
        # Separate tabs (no shared form token): only the claim can stop a second charge.
        return browser.post(f"/billing/shop/invoices/{invoice.pk}/retry", follow=True)

    pages = in_threads(20, click)
    assert all(page.status_code == 200 for page in pages), pages
    said = b"".join(page.content for page in pages)
    assert b"already in progress" in said
    assert len(stripe_standin.intents()) == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid"


@pytest.mark.django_db(transaction=True)
def test_F5_five_overlapping_billing_runs_charge_each_invoice_once(make_account, stripe_standin):
    issued_unpaid(make_account, stripe_standin, slugs=[f"shop-{n}" for n in range(6)])
    stripe_standin.proxy.delay = 0.1
    results = in_threads(5, lambda i: run_billing(as_of=T0 + timedelta(hours=1)))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(stripe_standin.intents()) == 6 and len(succeeded(stripe_standin)) == 6
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    assert PaymentAttempt.objects.count() == 6


def test_F5_a_lost_answer_is_recovered_with_the_same_key_without_a_second_charge(
    make_account, stripe_standin
):
    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    stripe_standin.proxy.fail_next("lost")  # Stripe charges; the answer never arrives
    payments.invoice_collect(invoice_id=invoice.pk)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "unknown" and len(succeeded(stripe_standin)) == 1
    assert payments.invoice_collect(invoice_id=invoice.pk) is None  # in flight: not re-sent
    assert payments.attempts_reconcile(as_of=datetime.now(UTC)) == 0  # too early to ask
    later = datetime.now(UTC) + payments.IN_FLIGHT_TIMEOUT + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):  # staleness is judged by the wall clock
        assert payments.attempts_reconcile(as_of=later) == 1
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert invoice.status == "paid" and attempt.status == "succeeded"
    assert attempt.stripe_payment_intent == succeeded(stripe_standin)[0].id
    assert len(stripe_standin.intents()) == 1


def test_F5_stripe_errors_become_states_not_crashes(make_account, stripe_standin):
    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    stripe_standin.proxy.fail_next(503)
    payments.invoice_collect(invoice_id=invoice.pk)
    assert PaymentAttempt.objects.get().status == "unknown"
    # The key is still held by a request Stripe is running: 409 idempotency_error, no raise.
    attempt = PaymentAttempt.objects.get()
    stripe_standin.proxy.in_flight.add(attempt.idempotency_key)
    result = payments._charge(attempt)
    assert result.status == "unknown"
    stripe_standin.proxy.in_flight.clear()


def test_F5_a_hung_stripe_is_given_up_on_after_the_timeout(make_account, stripe_standin, settings):
    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    settings.STRIPE_TIMEOUT_SECONDS = 1
    stripe_standin.proxy.fail_next(("hang", 4))
    started = datetime.now(UTC)
    payments.invoice_collect(invoice_id=invoice.pk)
    assert datetime.now(UTC) - started < timedelta(seconds=3.5)
    assert PaymentAttempt.objects.get().status == "unknown"


def test_one_in_flight_attempt_per_invoice_is_held_by_the_database(make_account, stripe_standin):
    from django.db import IntegrityError, transaction

    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    common = {"invoice": invoice, "amount_minor": 1, "currency": "USD", "created_at": T0}
    PaymentAttempt.objects.create(number=1, idempotency_key="k1", status="sending", **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.create(number=2, idempotency_key="k2", **common)


# --- every issued invoice is collected -------------------------------------------------------


def test_an_upgrade_invoice_is_collected_without_anyone_asking(
    make_account, stripe_standin, partner_api, django_capture_on_commit_callbacks
):
    [shop] = issued_unpaid(make_account, stripe_standin)
    run_billing(as_of=T0)  # the first invoice is paid
    with (
        time_machine.travel(T0 + timedelta(days=15), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = partner_api.post(
            "/api/v1/accounts/shop/subscription/changes", {"plan": "pro"}, format="json"
        )
    assert response.status_code == 201
    upgrade = Invoice.objects.get(reason="upgrade")
    assert upgrade.status == "paid" and upgrade.attempts.get().amount_minor == 15000
    assert len(succeeded(stripe_standin)) == 2


def test_an_invoice_issued_before_the_card_is_charged_once_a_card_is_saved(
    make_account, stripe_standin, partner_api, django_capture_on_commit_callbacks
):
    opened(make_account, "shop")
    run_billing(as_of=T0)
    invoice = Invoice.objects.get()
    assert invoice.status == "open" and not invoice.attempts.exists()  # no card: it waits
    with django_capture_on_commit_callbacks(execute=True):
        response = partner_api.put(
            "/api/v1/accounts/shop/payment-method",
            {"stripe_payment_method": stripe_standin.card(OK)},
            format="json",
        )
    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == "paid" and len(succeeded(stripe_standin)) == 1


def test_invoices_the_broker_lost_are_collected_by_the_next_sweep(make_account, stripe_standin):
    issued_unpaid(make_account, stripe_standin, slugs=["a", "b", "c"])
    broker_down = mock.patch.object(
        tasks.payment_collect_invoice, "delay", side_effect=ConnectionError("redis is down")
    )
    with broker_down:
        tasks.collect_later(Invoice.objects.first().pk)  # no crash: the sweep will do it
        tasks.payment_collect_due()
    assert not PaymentAttempt.objects.exists()
    done = run.collect_due()
    assert done["collected"] == 3
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    assert len(stripe_standin.intents()) == 3
    assert run.collect_due()["collected"] == 0  # nothing twice


def test_a_worker_killed_after_claiming_is_settled_by_the_sweep(make_account, stripe_standin):
    issued_unpaid(make_account, stripe_standin, slugs=["a", "b"])
    first, second = Invoice.objects.order_by("pk")
    with (
        mock.patch("billing.payments._apply", side_effect=SystemExit("SIGKILL")),
        pytest.raises(SystemExit),
    ):
        payments.invoice_collect(invoice_id=first.pk)  # Stripe charged; nothing was recorded
    run.collect_due()  # right after the restart: the claimed one is left alone
    assert PaymentAttempt.objects.get(invoice=first).status == "sending"
    second.refresh_from_db()
    assert second.status == "paid"
    later = datetime.now(UTC) + timedelta(minutes=6)
    with time_machine.travel(later, tick=False):  # staleness is judged by the wall clock
        run.collect_due(as_of=later)
    first.refresh_from_db()
    assert first.status == "paid" and len(stripe_standin.intents()) == 2


# --- credits ---------------------------------------------------------------------------------


def test_F5_a_fully_credited_invoice_is_never_charged(make_account, stripe_standin):
    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    note = credit_note_issue(invoice=invoice, amount_minor=invoice.total_minor, description="Sorry")
    invoice.refresh_from_db()
    note.refresh_from_db()
    assert invoice.status == "paid" and note.status == "paid"
    assert run.collect_due()["collected"] == 0
    assert stripe_standin.intents() == []


def test_F5_a_partly_credited_invoice_is_charged_what_is_left(make_account, stripe_standin):
    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    credit_note_issue(invoice=invoice, amount_minor=2500, description="Goodwill")
    payments.invoice_collect(invoice_id=invoice.pk)
    assert PaymentAttempt.objects.get().amount_minor == 6000 - 2500
    assert [i.amount for i in stripe_standin.intents()] == [3500]


def test_F5_a_credit_on_a_paid_invoice_is_taken_off_the_next_one(make_account, stripe_standin):
    [shop] = issued_unpaid(make_account, stripe_standin)
    run_billing(as_of=T0)  # paid
    first = Invoice.objects.get()
    note = credit_note_issue(invoice=first, amount_minor=1000, description="Goodwill")
    assert AccountCredit.objects.get().remaining_minor == 1000
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))
    close = Invoice.objects.get(reason="period_close")
    credit = close.lines.get(kind="credit")
    assert credit.amount_minor == -1000 and note.number in credit.description
    assert close.total_minor == 6000 - 1000
    note.refresh_from_db()
    assert note.status == "paid" and AccountCredit.objects.get().remaining_minor == 0


def tickets(n, at, prefix="t"):
    events = []
    for i in range(n):
        when = at + timedelta(minutes=i)
        for author, shift in (("customer", 0), ("agent", 30)):
            events.append(
                {
                    "id": f"{prefix}{i}-{author}",
                    "type": "message",
                    "ticket": f"{prefix}{i}",
                    "occurred_at": when + timedelta(seconds=shift),
                    "channel": "email",
                    "author": author,
                }
            )
    return events


def test_F6_a_correction_larger_than_the_next_invoice_becomes_a_credit_not_a_failed_close(
    make_account, stripe_standin
):
    shop = opened(make_account, "shop")
    other = opened(make_account, "other")
    run_billing(as_of=T0)
    ingest(shop, tickets(500, T0 + timedelta(days=2)), now=T0 + timedelta(days=3))
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))  # 2 blocks of overage: 8,000
    november = Invoice.objects.get(account=shop, reason="period_close")
    assert november.total_minor == 6000 + 8000
    # A re-evaluation finds 250 of November's tickets were not billable after all.
    doomed = Charge.objects.filter(account=shop, meter="helpdesk_tickets").order_by("pk")[:250]
    Charge.objects.filter(pk__in=list(doomed.values_list("pk", flat=True))).delete()
    result = run_billing(as_of=datetime(2027, 1, 1, tzinfo=UTC))
    assert result.set_aside == []
    december = Invoice.objects.filter(account=shop, reason="period_close").latest("issued_at")
    kinds = {line.kind: line.amount_minor for line in december.lines.all()}
    shown = [(line.kind, line.amount_minor, line.description) for line in december.lines.all()]
    assert kinds == {"credit": -8000, "plan_fee": 6000, "credit_carried": 2000}, shown
    assert december.total_minor == 0
    assert AccountCredit.objects.get(account=shop).remaining_minor == 2000
    assert Invoice.objects.filter(account=other, reason="period_close").count() == 2
    run_billing(as_of=datetime(2027, 2, 1, tzinfo=UTC))
    january = Invoice.objects.filter(account=shop, reason="period_close").latest("issued_at")
    assert january.total_minor == 6000 - 2000


def test_P6_an_upgrade_before_the_first_run_bills_the_start_on_the_old_terms(
    make_account, partner_api
):
    opened(make_account, "shop")  # no run_billing yet: the start invoice is not issued
    with time_machine.travel(datetime(2026, 11, 16, tzinfo=UTC), tick=False):
        response = partner_api.post(
            "/api/v1/accounts/shop/subscription/changes", {"plan": "pro"}, format="json"
        )
    assert response.status_code == 201
    run_billing(as_of=datetime(2026, 11, 16, 1, tzinfo=UTC))
    start = Invoice.objects.get(reason="subscription_start")
    upgrade = Invoice.objects.get(reason="upgrade")
    assert start.total_minor == 6000  # Basic, the terms at the period's start
    assert upgrade.total_minor == 15000  # (360 $ − 60 $) × 15/30 days, once
    assert Invoice.objects.count() == 2


# --- isolation -------------------------------------------------------------------------------


def test_one_subscription_that_fails_to_close_is_set_aside_and_the_others_are_billed(
    make_account,
):
    accounts = [opened(make_account, f"shop-{n}") for n in range(4)]
    run_billing(as_of=T0)
    broken = accounts[2]
    real = closing.claim._price_close

    def price(subscription, *args):
        if subscription.account_id == broken.pk:
            raise ValueError("corrupt allowance row")
        return real(subscription, *args)

    december = datetime(2026, 12, 1, tzinfo=UTC)
    # Patched where periods_close looks it up (billing/closing/claim.py).
    with mock.patch.object(closing.claim, "_price_close", side_effect=price):
        result = run_billing(as_of=december)
    closes = Invoice.objects.filter(reason="period_close")
    assert closes.count() == 3 and not closes.filter(account=broken).exists()
    aside = CloseSetAside.objects.get()
    assert aside.subscription.account == broken and "corrupt allowance row" in aside.error
    assert result.set_aside == [aside.subscription_id]
    # Before its backoff ends it is not tried again; after it, and fixed, it is billed.
    assert run_billing(as_of=december + timedelta(minutes=1)).set_aside == []
    run_billing(as_of=december + timedelta(minutes=10))
    assert closes.filter(account=broken).count() == 1
    assert not CloseSetAside.objects.exists()


def test_a_subscription_that_keeps_failing_to_close_is_tried_after_5_min_30_min_2_h_then_12_h(
    make_account,
):
    broken = opened(make_account, "shop")
    run_billing(as_of=T0)
    december = datetime(2026, 12, 1, tzinfo=UTC)
    waits, at = [], december
    failing = mock.patch.object(closing.claim, "_price_close", side_effect=ValueError("corrupt"))
    with failing:
        for _ in range(5):
            assert run_billing(as_of=at).set_aside == [broken.subscriptions.get().pk]
            retry_at = CloseSetAside.objects.get().next_attempt_at
            waits.append(retry_at - at)
            assert run_billing(as_of=retry_at - timedelta(seconds=1)).set_aside == []  # waiting
            at = retry_at
    minute = timedelta(minutes=1)
    assert waits == [5 * minute, 30 * minute, 120 * minute, 720 * minute, 720 * minute]
    assert CloseSetAside.objects.get().attempts == 5
    assert not Invoice.objects.filter(account=broken, reason="period_close").exists()


# --- webhooks --------------------------------------------------------------------------------


def test_a_webhook_whose_processing_fails_is_retried_not_dropped(make_account, stripe_standin):
    event = StripeEvent.objects.create(
        stripe_id="evt_1",
        type="payment_intent.succeeded",
        payload={"data": {"object": {"id": "pi_unknown", "metadata": {}}}},
        received_at=T0,
    )
    with mock.patch.object(
        payments, "payment_intent_changed", side_effect=RuntimeError("database blip")
    ):
        assert webhooks.stripe_event_process(stripe_event_id="evt_1") is False
    event.refresh_from_db()
    assert event.processed_at is None and event.attempts == 1
    assert "database blip" in event.last_error
    later = event.next_attempt_at + timedelta(seconds=1)
    assert webhooks.stripe_events_retry(as_of=later) == 1
    event.refresh_from_db()
    assert event.processed_at is not None


def test_a_webhook_that_keeps_failing_is_retried_after_1_5_30_min_then_every_2_h(db):
    StripeEvent.objects.create(
        stripe_id="evt_1",
        type="payment_intent.succeeded",
        payload={"data": {"object": {"id": "pi_unknown", "metadata": {}}}},
        received_at=T0,
    )
    event = StripeEvent.objects.filter(stripe_id="evt_1")
    waits, at = [], T0
    with mock.patch.object(payments, "payment_intent_changed", side_effect=RuntimeError("down")):
        with time_machine.travel(at, tick=False):
            webhooks.stripe_event_process(stripe_event_id="evt_1")
        for _ in range(4):
            retry_at = event.get().next_attempt_at
            waits.append(retry_at - at)
            assert webhooks.stripe_events_retry(as_of=retry_at - timedelta(seconds=1)) == 0
            at = retry_at
            with time_machine.travel(at, tick=False):
                webhooks.stripe_events_retry(as_of=at)
    waits.append(event.get().next_attempt_at - at)
    minute = timedelta(minutes=1)
    assert waits == [minute, 5 * minute, 30 * minute, 120 * minute, 120 * minute]
    assert event.get().attempts == 5


def test_a_redelivered_unprocessed_webhook_is_queued_again(db, stripe_standin, settings):
    import json
    import time

    import stripe

    payload = json.dumps({"id": "evt_2", "type": "payment_intent.succeeded", "data": {}})
    header = stripe.WebhookSignature._compute_signature(
        f"{int(time.time())}.{payload}", settings.STRIPE_WEBHOOK_SECRET
    )
    signature = f"t={int(time.time())},v1={header}"
    event, pending = webhooks.webhook_receive(payload=payload.encode(), signature=signature)
    assert pending
    event, pending = webhooks.webhook_receive(payload=payload.encode(), signature=signature)
    assert pending  # not processed yet: the redelivery queues it again
    webhooks.stripe_event_process(stripe_event_id="evt_2")
    _, pending = webhooks.webhook_receive(payload=payload.encode(), signature=signature)
    assert not pending


def test_a_signed_webhook_without_an_id_is_refused_not_a_500(stripe_standin, settings, client):
    import json
    import time

    import stripe

    payload = json.dumps({"type": "payment_intent.succeeded"})
    now = int(time.time())
    header = stripe.WebhookSignature._compute_signature(
        f"{now}.{payload}", settings.STRIPE_WEBHOOK_SECRET
    )
    response = client.post(
        "/stripe/webhooks/",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=f"t={now},v1={header}",
    )
    assert response.status_code == 400


# --- configuration ---------------------------------------------------------------------------


def test_database_connections_are_checked_before_reuse(settings):
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


def test_stripe_calls_have_an_explicit_timeout(settings):
    assert settings.STRIPE_TIMEOUT_SECONDS <= 15
    assert gateway.client()._requestor._client._timeout == settings.STRIPE_TIMEOUT_SECONDS


@pytest.mark.django_db(transaction=True)
def test_F5_twenty_concurrent_retries_against_a_four_worker_server_charge_once(
    make_account, stripe_standin, partner, settings
):
    """The same race across processes: gunicorn with four workers on the test database."""
    import os
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    from tests.stripe_standin import free_port

    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    _, key = account_services.api_key_create(partner=partner, name="race")
    stripe_standin.proxy.delay = 0.3
    db = connection.settings_dict
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "STRIPE_API_BASE": stripe_standin.proxy.url,
        "STRIPE_API_KEY": "sk_test_standin",
    }
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "billing_portal.wsgi",
            "-w",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=root,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/invoices/{invoice.pk}/retry"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)

        def retry(i):
            request = urllib.request.Request(
                url, method="POST", headers={"Authorization": f"Bearer {key}"}
            )
            try:
                return urllib.request.urlopen(request, timeout=60).status
            except urllib.error.HTTPError as refused:
                return refused.code

        codes = sorted(in_threads(20, retry))
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert codes.count(200) == 1 and codes.count(409) == 19, codes
    assert len(stripe_standin.intents()) == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid"


@pytest.mark.django_db(transaction=True)
def test_F3_five_overlapping_runs_with_retries_due_retry_each_invoice_once(
    make_account, stripe_standin
):
    from tests.billing.test_payments import DECLINED

    accounts = [opened(make_account, f"shop-{n}") for n in range(6)]
    for account in accounts:
        card(account, stripe_standin, DECLINED)
    run_billing(as_of=T0)  # every first charge is declined: past due, retry due the next day
    assert set(Invoice.objects.values_list("status", flat=True)) == {"past_due"}
    for account in accounts:
        card(account, stripe_standin, OK)  # the merchants fix their cards
    stripe_standin.proxy.delay = 0.1
    results = in_threads(5, lambda i: run_billing(as_of=T0 + timedelta(days=2)))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    assert len(stripe_standin.intents()) == 12 and len(succeeded(stripe_standin)) == 6
    assert PaymentAttempt.objects.filter(trigger="automatic_retry").count() == 6
