"""`manage.py reconcile_stripe`: each kind of difference between the ledger and Stripe made on
purpose against the stand-in, and found; an agreeing ledger exits 0."""

import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing import payments
from billing.models import Invoice, PaymentAttempt
from billing.reconcile import ledger_compare
from tests.billing.test_money_safety import issued_unpaid
from tests.billing.test_payments import DECLINED


def span():
    """A range holding both clocks: ours (moved by --clock or travel) and the stand-in's."""
    ours = timezone.now()
    hatch = time_machine.escape_hatch
    real = hatch.time.time() if hatch.is_travelling() else time.time()
    stripes = datetime.fromtimestamp(real, tz=UTC)
    return min(ours, stripes) - timedelta(days=1), max(ours, stripes) + timedelta(days=1)


def reconcile(*extra) -> tuple[int, str]:
    since, until = span()
    out = StringIO()
    try:
        call_command(
            "reconcile_stripe",
            "--since",
            since.isoformat(),
            "--until",
            until.isoformat(),
            *extra,
            stdout=out,
        )
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def kinds():
    return sorted(d.kind for d in ledger_compare(since=span()[0], until=span()[1]))


def paid(make_account, stripe_standin, slugs=("shop",)):
    issued_unpaid(make_account, stripe_standin, slugs=slugs)
    for invoice in Invoice.objects.order_by("pk"):
        payments.invoice_collect(invoice_id=invoice.pk)


def test_an_agreeing_ledger_exits_zero(make_account, stripe_standin):
    paid(make_account, stripe_standin, slugs=("a", "b"))
    [declined] = issued_unpaid(make_account, stripe_standin, slugs=("c",))
    payments.payment_method_set(
        account=declined, stripe_payment_method=stripe_standin.card(DECLINED)
    )
    payments.invoice_collect(invoice_id=Invoice.objects.get(account=declined).pk)
    assert PaymentAttempt.objects.filter(status="failed").count() == 1
    code, out = reconcile()
    assert code == 0, out
    assert "agree" in out


def test_an_intent_stripe_has_and_we_do_not_is_missing_locally(make_account, stripe_standin):
    paid(make_account, stripe_standin)
    stripe_standin.client.v1.payment_intents.create(
        params={
            "amount": 4200,
            "currency": "usd",
            "payment_method": stripe_standin.card("4242424242424242"),
            "confirm": True,
            "metadata": {"attempt": "invoice-999-attempt-1"},
        }
    )
    code, out = reconcile()
    assert code == 1
    assert "missing_locally: attempt invoice-999-attempt-1" in out and "4200 USD" in out
    assert kinds() == ["missing_locally"]


def test_an_attempt_stripe_never_saw_is_missing_at_stripe(make_account, stripe_standin):
    paid(make_account, stripe_standin)
    attempt = PaymentAttempt.objects.get()
    PaymentAttempt.objects.filter(pk=attempt.pk).update(stripe_payment_intent="pi_neverthere")
    code, out = reconcile()
    assert code == 1 and "missing_at_stripe" in out and "pi_neverthere" in out
    # The real intent is now unclaimed by any attempt: that is the other side of it.
    assert kinds() == ["missing_at_stripe", "missing_locally"]


def test_an_amount_that_differs_is_reported_with_both_amounts(make_account, stripe_standin):
    paid(make_account, stripe_standin)
    PaymentAttempt.objects.update(amount_minor=5999)
    code, out = reconcile()
    assert code == 1
    assert "amount_differs" in out and "ours 5999 USD; Stripe 6000 USD" in out
    assert kinds() == ["amount_differs"]


def test_a_lost_answer_differs_until_settle_asks_stripe(make_account, stripe_standin):
    [shop] = issued_unpaid(make_account, stripe_standin)
    stripe_standin.proxy.fail_next("lost")  # charged at Stripe, the answer never came
    payments.invoice_collect(invoice_id=Invoice.objects.get(account=shop).pk)
    assert PaymentAttempt.objects.get().status == "unknown"
    code, out = reconcile()
    assert code == 1 and "status_differs" in out and "ours unknown; Stripe succeeded" in out
    code, out = reconcile("--settle")  # too early: the sweeper leaves a fresh attempt alone
    assert code == 1 and "Settled 0" in out
    with time_machine.travel(timezone.now() + payments.IN_FLIGHT_TIMEOUT + timedelta(minutes=1)):
        code, out = reconcile("--settle")
    assert code == 0, out
    assert "Settled 1" in out
    assert Invoice.objects.get(account=shop).status == "paid"
    assert len(stripe_standin.intents()) == 1


def test_a_second_successful_intent_for_one_invoice_is_charged_twice(make_account, stripe_standin):
    paid(make_account, stripe_standin)
    first = PaymentAttempt.objects.get()
    invoice = first.invoice
    # A second attempt under another key, as a bug bypassing the in-flight guard would send.
    second = PaymentAttempt.objects.create(
        invoice=invoice,
        number=2,
        trigger="manual",
        idempotency_key=f"invoice-{invoice.pk}-attempt-2",
        amount_minor=first.amount_minor,
        currency=first.currency,
        payment_method=first.payment_method,
        created_at=timezone.now(),
        status="sending",
    )
    result = payments._charge(second)
    PaymentAttempt.objects.filter(pk=second.pk).update(
        status=result.status, stripe_payment_intent=result.payment_intent
    )
    code, out = reconcile()
    assert code == 1 and "charged_twice" in out and "2 succeeded payment intents" in out
    assert kinds() == ["charged_twice"]


def test_a_refund_made_at_stripe_is_not_in_the_ledger(make_account, stripe_standin):
    paid(make_account, stripe_standin)
    intent = PaymentAttempt.objects.get().stripe_payment_intent
    stripe_standin.client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
    code, out = reconcile()
    assert code == 1 and "refund_not_in_ledger" in out and "1000 USD" in out and intent in out
    assert kinds() == ["refund_not_in_ledger"]


def test_a_paid_invoice_whose_charge_failed_at_stripe_is_a_status_difference(
    make_account, stripe_standin
):
    [shop] = issued_unpaid(make_account, stripe_standin)
    payments.payment_method_set(account=shop, stripe_payment_method=stripe_standin.card(DECLINED))
    payments.invoice_collect(invoice_id=Invoice.objects.get(account=shop).pk)
    PaymentAttempt.objects.update(status="succeeded")  # the ledger says paid; Stripe declined
    code, out = reconcile()
    assert code == 1 and "ours succeeded; Stripe requires_payment_method (failed)" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--since", "yesterday"], "Not a date"),
        (["--since", "2026-12-02", "--until", "2026-12-01"], "must be after"),
    ],
)
def test_bad_dates_are_refused_in_words(db, stripe_standin, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("reconcile_stripe", *args, stdout=StringIO())
