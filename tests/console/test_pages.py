"""The queue (what is in it, filters, search, amount × age order, pages) and the details."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import CloseSetAside, Dunning, Invoice, PaymentAttempt
from console import selectors
from metering.models import Reevaluation
from plans.models import Subscription

pytestmark = pytest.mark.django_db


def unpaid(account, number, total, days_old, status="past_due"):
    at = timezone.now() - timedelta(days=days_old)
    return Invoice.objects.create(
        account=account,
        subscription=Subscription.objects.get(account=account),
        reason="upgrade",
        status=status,
        number=number,
        currency=account.currency,
        period_start=at,
        period_end=at + timedelta(days=30),
        total_minor=total,
        issued_at=at,
    )


def numbers(page):
    return [row.invoice.number for row in page.object_list]


@pytest.fixture
def queue_accounts(make_account):
    a = make_account(slug="alpha")
    b = make_account(slug="bravo", plan="pro", currency="EUR")
    # amount × age: A1 100×10=1000, A2 300×2=600, B1 50×30=1500, B2 1000×1=1000 (EUR)
    unpaid(a, "X-A1", 100_00, 10)
    unpaid(a, "X-A2", 300_00, 2, status="requires_confirmation")
    unpaid(b, "X-B1", 50_00, 30)
    b2 = unpaid(b, "X-B2", 1000_00, 1, status="open")
    Dunning.objects.create(invoice=b2, held_reason="Over the cap (P8).")
    unpaid(a, "X-PAID", 999_00, 40, status="paid")  # never in the queue
    return a, b


def queue(**filters):
    return selectors.attention_queue(filters=filters, page=1, now=timezone.now())


def test_the_queue_holds_what_needs_a_person_sorted_by_amount_times_age(queue_accounts):
    assert numbers(queue()) == ["X-B1", "X-A1", "X-B2", "X-A2"]
    assert numbers(queue(sort="amount")) == ["X-B2", "X-A2", "X-A1", "X-B1"]
    assert numbers(queue(sort="age")) == ["X-B1", "X-A1", "X-A2", "X-B2"]


def test_filters_and_search(queue_accounts):
    assert numbers(queue(attention="held")) == ["X-B2"]
    assert numbers(queue(attention="requires_confirmation")) == ["X-A2"]
    assert numbers(queue(currency="EUR")) == ["X-B1", "X-B2"]
    assert numbers(queue(plan="pro")) == ["X-B1", "X-B2"]
    assert numbers(queue(min_amount=200)) == ["X-B2", "X-A2"]
    assert numbers(queue(min_age_days=5)) == ["X-B1", "X-A1"]
    assert numbers(queue(q="alph")) == ["X-A1", "X-A2"]
    assert numbers(queue(q="x-b1")) == ["X-B1"]
    PaymentAttempt.objects.create(
        invoice=Invoice.objects.get(number="X-A1"),
        number=1,
        trigger="automatic",
        idempotency_key="k-1",
        amount_minor=1,
        currency="USD",
        status="failed",
        stripe_payment_intent="pi_123abc",
        created_at=timezone.now(),
    )
    assert numbers(queue(q="pi_123abc")) == ["X-A1"]


def test_an_unknown_outcome_is_in_the_queue(queue_accounts):
    paid = Invoice.objects.get(number="X-PAID")
    Invoice.objects.filter(pk=paid.pk).update(status="open")
    PaymentAttempt.objects.create(
        invoice=paid,
        number=1,
        trigger="automatic",
        idempotency_key="k-2",
        amount_minor=1,
        currency="USD",
        status="unknown",
        created_at=timezone.now(),
    )
    page = queue(attention="unknown")
    assert numbers(page) == ["X-PAID"] and page.object_list[0].needs == ["outcome unknown"]


def test_pages_of_25(make_account):
    account = make_account(slug="many")
    for n in range(30):
        unpaid(account, f"N-{n:02d}", 100 + n, 3)
    first, second = queue(), selectors.attention_queue(filters={}, page=2, now=timezone.now())
    assert len(first.object_list) == 25 and len(second.object_list) == 5
    assert numbers(first)[0] == "N-29"


def test_the_queue_page_lists_invoices_and_set_asides(ops, queue_accounts):
    a, _ = queue_accounts
    CloseSetAside.objects.create(
        subscription=Subscription.objects.get(account=a),
        step="period close",
        error="ZeroDivisionError: boom",
        first_failed_at=timezone.now(),
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    Reevaluation.objects.create(
        account=a,
        kind="ticket",
        subject="T-77",
        marked_at=timezone.now(),
        attempts=2,
        last_error="KeyError: 'x'",
        failed_at=timezone.now(),
    )
    page = ops.get("/console/?currency=EUR").content.decode()
    assert "X-B1" in page and "X-A1" not in page and "€50.00" in page
    assert "ZeroDivisionError: boom" in page and "T-77" in page
    bad = ops.get("/console/?min_amount=lots&sort=nonsense")
    assert bad.status_code == 200  # bad filters are shown as errors, not a 500


def test_the_invoice_detail_says_what_happened_and_what_comes_next(ops, past_due):
    page = ops.get(f"/console/invoices/{past_due.pk}/").content.decode()
    attempt = past_due.attempts.get()
    assert attempt.failure_code in page and attempt.failure_reason in page
    assert f"Payment failed for invoice {past_due.number}" in page  # the email sent
    assert "automatic retry" in page and "subscription suspended if still unpaid" in page
    assert "open → past due" in page  # from the audit log
    for label in [
        "Retry now",
        "Send a reminder now",
        "Pause dunning",
        "Mark paid out of band",
        "Void",
        "Mark uncollectible",
        "Issue a credit note",
    ]:
        assert label in page


def test_the_account_detail_shows_state_history_entitlements_and_usage(ops, past_due):
    page = ops.get(f"/console/accounts/{past_due.account_id}/").content.decode()
    assert "active → <strong>past due</strong>" in page
    assert "Entitlements" in page and "Helpdesk" in page
    assert "Usage this period" in page and "Helpdesk tickets" in page
    assert past_due.number in page and "Suspend" in page


def test_the_audit_log_is_searchable(ops, past_due):
    page = ops.get("/console/audit/?q=shop&action=invoice.").content.decode()
    assert past_due.number in page and "invoice: status" in page
    assert "email: sent" not in page


def test_a_charge_waiting_too_long_for_stripe_is_in_the_queue(queue_accounts):
    paid = Invoice.objects.get(number="X-PAID")
    Invoice.objects.filter(pk=paid.pk).update(status="open")
    attempt = PaymentAttempt.objects.create(
        invoice=paid,
        number=1,
        trigger="automatic",
        idempotency_key="k-3",
        amount_minor=1,
        currency="USD",
        status="sending",
        created_at=timezone.now(),
    )
    assert numbers(queue(attention="unknown")) == []  # a charge in flight for seconds
    PaymentAttempt.objects.filter(pk=attempt.pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    page = queue(attention="unknown")
    assert numbers(page) == ["X-PAID"]
    assert page.object_list[0].needs == ["charge waiting for Stripe"]
