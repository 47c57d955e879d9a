"""Chaos case for PSD2 (F2, F5): invoices waiting for the customer's bank, stormed at once by
"Retry payment" on the page, the API's retry, the sweep and the retry schedule (half of them
after the card changed, so the waiting payment must be replaced while the storm runs); then
every confirmation link ever made is confirmed. Exactly one payment per invoice may succeed,
and the ledger must match Stripe (reconcile_stripe's checks)."""

from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.test import Client

from accounts import services as account_services
from accounts.models import Membership
from billing import dunning, payments, run
from billing.models import Invoice, PaymentAttempt
from billing.reconcile import ledger_compare
from tests.billing.test_money_safety import card, in_threads, opened
from tests.billing.test_payments import THREE_DS
from tests.conftest import client_with_key

from .conftest import repetitions
from .test_money_chaos import T0, everywhere, succeeded_per_invoice

OTHER_THREE_DS = "4000002500003155"


def waiting_invoices(make_account, stripe_standin, count: int) -> list[Invoice]:
    accounts = [opened(make_account, f"p{n}") for n in range(count)]
    for account in accounts:
        card(account, stripe_standin, THREE_DS)
    run.run_billing(as_of=T0)
    invoices = list(Invoice.objects.order_by("pk"))
    assert {i.status for i in invoices} == {"requires_confirmation"}
    return invoices


def storm(invoice: Invoice, owner, api_key: str) -> list:
    """Six callers at once: two page presses, two API calls, the sweep, the retry schedule."""
    page = f"/billing/{invoice.account.slug}/invoices/{invoice.pk}/retry"
    api = f"/api/v1/invoices/{invoice.pk}/retry"

    def press(i):
        if i < 2:
            browser = Client()
            browser.force_login(owner)
            return browser.post(page).status_code
        if i < 4:
            return client_with_key(api_key).post(api).status_code
        if i == 4:
            return run.collect_due()
        return dunning.dunning_run(as_of=T0 + timedelta(days=2))

    return in_threads(6, press)


@pytest.mark.django_db(transaction=True)
def test_psd2_retries_from_everywhere_then_every_link_confirmed_pay_each_invoice_once(
    make_account, stripe_standin, django_user_model, chaos_report
):
    count = repetitions("psd2_invoices", fast=4, full=100)
    # Links are signed on the wall clock: it runs an hour after the invoices, ticking.
    with time_machine.travel(T0 + timedelta(hours=1), tick=True):
        invoices = waiting_invoices(make_account, stripe_standin, count)
        errors = []
        for n, invoice in enumerate(invoices):
            account = invoice.account
            owner = django_user_model.objects.create_user(f"owner@p{n}.example", password="pw")
            Membership.objects.create(user=owner, account=account, role=Membership.Role.OWNER)
            _, key = account_services.api_key_create(partner=account.partner, account=account)
            if n % 2:  # the customer saved another 3-D Secure card: a replacement is due
                card(account, stripe_standin, OTHER_THREE_DS)
            results = storm(invoice, owner, key)
            errors += [r for r in results if isinstance(r, Exception) or r == 500]
        assert errors == []
        attempts = list(PaymentAttempt.objects.select_related("invoice"))
        live = Counter(a.invoice_id for a in attempts if a.status == "requires_action")
        assert set(live.values()) == {1} and len(live) == count, live
        # Every link ever made, old and new, confirmed by a customer who clicks them all.
        confirmed = 0
        for attempt in attempts:
            try:
                stripe_standin.authenticate(attempt.stripe_payment_intent, success=True)
            except Exception:  # noqa: S112 - a cancelled intent cannot be authenticated
                continue
            finally:
                Client().post(payments.confirmation_path(attempt))
            confirmed += 1
    per_invoice = succeeded_per_invoice(stripe_standin)
    assert sorted(per_invoice.values()) == [1] * count, per_invoice
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    assert ledger_compare(since=everywhere()[0], until=everywhere()[1]) == []
    replaced = PaymentAttempt.objects.filter(status="canceled").count()
    assert replaced == count // 2
    chaos_report(
        "PSD2 retries from everywhere",
        invoices=count,
        callers_per_invoice=6,
        attempts=len(attempts),
        replaced_and_cancelled=replaced,
        links_confirmed=confirmed,
        succeeded_per_invoice=dict(Counter(per_invoice.values())),
        double_charges=sum(1 for c in per_invoice.values() if c > 1),
        ledger_differences=0,
    )

