"""P8: an invoice over the approved spending cap is held, visibly, and the people who can act
on it are told."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail

from accounts.models import Membership
from billing import payments
from billing.models import Invoice
from billing.run import run_billing
from plans.models import Subscription

NOV = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def capped(make_account, django_user_model):
    """Basic (6,000 a month) under a 5,000 cap, with an owner, an admin and an agent."""
    with time_machine.travel(NOV, tick=False):
        account = make_account(slug="shop", plan="basic")
    Subscription.objects.filter(account=account).update(spending_cap_minor=5000)
    for email, role in [
        ("owner@shop.example", Membership.Role.OWNER),
        ("admin@shop.example", Membership.Role.ADMIN),
        ("agent@shop.example", Membership.Role.AGENT),
    ]:
        user = django_user_model.objects.create_user(email, email=email, password="pw-123456")
        Membership.objects.create(user=user, account=account, role=role)
    return account


def test_P8_an_invoice_over_the_cap_is_held_and_says_why_in_the_api(capped, partner_api):
    run_billing(as_of=NOV)
    invoice = Invoice.objects.get(account=capped)
    assert invoice.total_minor == 6000
    with time_machine.travel(NOV, tick=False):
        assert payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic") is None
    assert invoice.attempts.count() == 0  # never sent to Stripe
    body = partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()
    assert body["status"] == "open"
    assert body["held"]["reason"] == (
        "Over the approved spending cap of $50.00 for the period: $0.00 already charged,"
        " this invoice $60.00."
    )
    assert body["held"]["at"] == "2026-11-01T00:00:00Z"
    listed = partner_api.get("/api/v1/accounts/shop/invoices").json()["results"]
    assert [item["held"] is not None for item in listed] == [True]
    assert payments.collectable_invoice_ids() == []  # the sweep leaves it alone


def test_P8_the_billing_email_owners_and_admins_are_told_once(
    capped, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run_billing(as_of=NOV)  # the sweep finds it over the cap
        invoice = Invoice.objects.get(account=capped)
        payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic", at=NOV)
        payments.invoice_charge(invoice_id=invoice.pk, trigger="retry", at=NOV)
    held = [m for m in mail.outbox if "on hold" in m.subject]
    assert len(held) == 1
    assert held[0].to == ["billing@shop.example", "admin@shop.example", "owner@shop.example"]
    assert "$50.00" in held[0].body and invoice.number in held[0].subject


def test_P8_an_invoice_within_the_cap_is_not_held(capped, partner_api):
    Subscription.objects.filter(account=capped).update(spending_cap_minor=6000)
    run_billing(as_of=NOV)
    invoice = Invoice.objects.get(account=capped)
    body = partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()
    assert body["held"] is None


def test_P8_a_close_invoices_next_period_fee_counts_toward_that_periods_cap(
    make_account, stripe_standin, partner_api, django_capture_on_commit_callbacks
):
    """The tester's case: cap 7,000; the Dec 1 close charges December's 6,000 fee (on an
    invoice for November's usage); Voice 20 added on Dec 16 would take December past the cap."""
    from tests.billing.test_payments import OK, use_card

    with time_machine.travel(NOV, tick=False):
        account = make_account(slug="shop", plan="basic")
    Subscription.objects.filter(account=account).update(spending_cap_minor=7000)
    use_card(partner_api, stripe_standin, OK)
    dec = datetime(2026, 12, 1, tzinfo=UTC)
    for moment in (NOV, dec):
        with time_machine.travel(moment, tick=False):
            run_billing(as_of=moment)
    close = Invoice.objects.get(account=account, reason="period_close")
    assert close.status == "paid" and close.period_start == NOV  # November's invoice...
    assert close.total_minor == 6000  # ...charging December's fee
    dec_16 = datetime(2026, 12, 16, tzinfo=UTC)
    with time_machine.travel(dec_16, tick=False):
        response = partner_api.post(
            "/api/v1/accounts/shop/subscription/changes",
            {"addons": [{"addon": "voice", "tier": "voice-20"}]},
            format="json",
        )
        assert response.status_code == 201, response.json()
        upgrade = Invoice.objects.get(account=account, reason="upgrade")
        assert upgrade.total_minor > 0 and 6000 + upgrade.total_minor > 7000
        assert payments.invoice_collect(invoice_id=upgrade.pk) is None
    upgrade.refresh_from_db()
    assert upgrade.status == "open" and upgrade.attempts.count() == 0
    assert upgrade.dunning.held_reason.startswith(
        "Over the approved spending cap of $70.00 for the period: $60.00 already charged,"
    )
    sub = Subscription.objects.get(account=account)
    assert payments.period_charged_minor(subscription=sub) == 6000
    # A charge that fits still goes: raise the cap to what December needs.
    Subscription.objects.filter(pk=sub.pk).update(spending_cap_minor=6000 + upgrade.total_minor)
    upgrade.dunning.delete()
    with time_machine.travel(dec_16, tick=False):
        payments.invoice_collect(invoice_id=upgrade.pk)
    upgrade.refresh_from_db()
    assert upgrade.status == "paid"
    assert payments.period_charged_minor(subscription=sub) == 6000 + upgrade.total_minor
