"""Collections figures against a fixture computed by hand."""

from datetime import UTC, datetime
from itertools import count

import pytest

from audit.services import audit_record
from billing.models import Dunning, Invoice, PaymentAttempt
from console.figures import collections_figures
from plans.models import Subscription
from tests.console.test_pages import unpaid

pytestmark = pytest.mark.django_db
_keys = count(1)


def attempt(invoice, status, trigger, at):
    return PaymentAttempt.objects.create(
        invoice=invoice,
        number=invoice.attempts.count() + 1,
        trigger=trigger,
        idempotency_key=f"fig-{next(_keys)}",
        amount_minor=invoice.total_minor,
        currency=invoice.currency,
        status=status,
        created_at=at,
    )


def day(month, d):
    return datetime(2026, month, d, 9, tzinfo=UTC)


def test_collections_figures_match_the_hand_computed_fixture(make_account):
    alpha = make_account(slug="alpha", plan="basic")  # $60.00 a month
    bravo = make_account(slug="bravo", plan="pro", interval="year")  # $3,600.00 a year
    charlie = make_account(slug="charlie", plan="basic", currency="EUR")
    delta = make_account(slug="delta", plan="pro")
    echo = make_account(slug="echo", plan="starter", currency="EUR")  # €10.00 a month
    Subscription.objects.filter(account=charlie).update(status="suspended")
    Subscription.objects.filter(account=delta).update(status="canceled")
    Subscription.objects.filter(account=echo).update(status="past_due")

    # Owed: alpha $60.00 less a $10.00 credit note, echo €10.00 waiting for confirmation.
    x1 = unpaid(alpha, "F-X1", 6000, 5)
    Invoice.objects.create(
        account=alpha,
        kind="credit_note",
        reason="correction",
        status="paid",
        number="F-CN",
        description="Goodwill credit",
        currency="USD",
        period_start=x1.period_start,
        period_end=x1.period_end,
        total_minor=-1000,
        credited_invoice=x1,
        issued_at=x1.issued_at,
    )
    unpaid(echo, "F-X2", 1000, 3, status="requires_confirmation")
    held = unpaid(bravo, "F-H", 5000, 1, status="open")
    Dunning.objects.create(invoice=held, held_reason="Over the cap (P8).")

    # October: 3 failed; recovered by an automatic retry and by the merchant; one still owed.
    i1, i2, i3 = (unpaid(alpha, f"F-I{n}", 100, 60, status="paid") for n in (1, 2, 3))
    Invoice.objects.filter(pk=i3.pk).update(status="past_due")
    attempt(i1, "failed", "automatic", day(10, 3))
    attempt(i1, "succeeded", "automatic_retry", day(10, 4))
    attempt(i2, "failed", "automatic", day(10, 10))
    attempt(i2, "failed", "automatic_retry", day(10, 11))
    attempt(i2, "succeeded", "retry", day(10, 12))
    attempt(i3, "failed", "automatic", day(10, 20))
    # November: 3 failed (x1 among them); two recovered by operators (a retry, a transfer).
    i4, i5 = (unpaid(alpha, f"F-I{n}", 100, 30, status="paid") for n in (4, 5))
    attempt(i4, "failed", "automatic", day(11, 2))
    attempt(i4, "succeeded", "operator", day(11, 3))
    attempt(i5, "failed", "automatic", day(11, 5))
    audit_record(action="operator.mark_paid", obj=i5, after="paid", reason="wire")
    attempt(x1, "failed", "automatic", day(11, 20))

    f = collections_figures(now=datetime.now(UTC))
    # MRR: alpha 6,000 + bravo 360,000 / 12 = 30,000 (USD); echo 1,000 (EUR, past due still
    # counts); charlie suspended and delta canceled do not.
    assert f.mrr_minor == {"EUR": 1000, "USD": 36000}
    # Past due: x1 6,000 - 1,000 credited + i3 100 (USD); x2 1,000 (EUR).
    assert f.past_due_minor == {"EUR": 1000, "USD": 5100} and f.past_due_count == 3
    assert f.suspended_accounts == 1 and f.invoices_held == 1
    assert [(m.month, m.failed, m.recovered, m.rate_percent, m.by) for m in f.recovery] == [
        ("2026-10", 3, 2, 67, {"automatic": 1, "merchant": 1, "operator": 0}),
        ("2026-11", 3, 2, 67, {"automatic": 0, "merchant": 0, "operator": 2}),
    ]


def test_the_figures_page_shows_them(ops, make_account):
    make_account(slug="alpha", plan="basic")
    page = ops.get("/console/figures/").content.decode()
    assert "$60.00" in page and "No failed payment yet." in page
