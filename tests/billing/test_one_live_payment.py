"""One live payment per invoice, PSD2 included (F2, F3, F5): a payment waiting for the
customer's bank is in flight; Retry (page, API, console), the sweep and dunning open no other;
a replaced one is cancelled at Stripe first, and its link says so. No card, no dunning. Against
the loopback stand-in; times are fixed (T0) or computed from now."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.core import mail

from accounts.errors import Conflict
from accounts.models import Membership
from billing import payments, tasks
from billing.models import Dunning, Invoice, PaymentAttempt, PaymentMethod
from billing.run import run_billing
from console import services as console_services
from plans.models import Subscription
from tests.billing.test_payments import (
    DECLINED,
    OK,
    T0,
    THREE_DS,
    sent_on_commit,
    subjects,
    use_card,
)


@pytest.fixture(autouse=True)
def an_hour_after_t0():
    """The wall clock an hour after the first invoice: links signed at T0 are fresh."""
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        yield


@pytest.fixture
def bill(django_capture_on_commit_callbacks):
    def run(as_of):
        with (
            django_capture_on_commit_callbacks(execute=True),
            time_machine.travel(as_of, tick=False),
        ):
            return run_billing(as_of=as_of)

    return run


@pytest.fixture
def shop(make_account, stripe_standin, partner_api):
    with time_machine.travel(T0, tick=False):
        return make_account(slug="shop", plan="basic")


@pytest.fixture
def owner_client(shop, client, django_user_model):
    owner = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=owner, account=shop, role=Membership.Role.OWNER)
    client.force_login(owner)
    return client


def waiting_for_confirmation(partner_api, stripe_standin, bill) -> Invoice:
    use_card(partner_api, stripe_standin, THREE_DS)
    bill(T0)
    invoice = Invoice.objects.get()
    assert invoice.status == "requires_confirmation"
    return invoice


def intent_statuses(stripe_standin) -> list[str]:
    return [i.status for i in stripe_standin.intents()]


def test_F2_retry_while_waiting_for_the_bank_opens_no_second_payment_anywhere(
    shop, partner_api, stripe_standin, bill, owner_client
):
    invoice = waiting_for_confirmation(partner_api, stripe_standin, bill)
    live = PaymentAttempt.objects.get()
    # The API says why, with the link of the payment that waits.
    api = partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry")
    assert api.status_code == 409
    assert api.json()["error"]["code"] == "awaiting_confirmation"
    assert api.json()["error"]["details"]["confirmation_url"] == payments.confirmation_url(live)
    # The page takes the merchant to the confirmation of the same payment.
    page = owner_client.post(f"/billing/shop/invoices/{invoice.pk}/retry")
    assert page.status_code == 302 and page.url == payments.confirmation_path(live)
    owner_client.post("/billing/shop/pay-outstanding")
    # The console, the sweep and the retry schedule leave it alone too.
    with pytest.raises(Conflict, match="waits for your confirmation"):
        console_services.invoice_retry_now(invoice=invoice, reason="customer called")
    for day in range(1, 16):
        bill(T0 + timedelta(days=day))
    assert PaymentAttempt.objects.count() == 1
    assert intent_statuses(stripe_standin) == ["requires_action"]
    assert subjects().count(f"Please confirm your payment for invoice {invoice.number}") == 1


def test_F5_every_link_ever_sent_confirmed_charges_once(
    shop, partner_api, stripe_standin, bill, client
):
    invoice = waiting_for_confirmation(partner_api, stripe_standin, bill)
    for _ in range(3):  # the tester's three presses of Retry payment
        assert partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry").status_code == 409
    links = {payments.confirmation_path(a) for a in PaymentAttempt.objects.all()}
    assert len(links) == 1
    [attempt] = PaymentAttempt.objects.all()
    stripe_standin.authenticate(attempt.stripe_payment_intent, success=True)
    with sent_on_commit():
        for link in links:
            client.post(link)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert intent_statuses(stripe_standin) == ["succeeded"]


def test_F2_a_new_card_replaces_the_waiting_payment_which_is_cancelled_at_stripe_first(
    shop, partner_api, stripe_standin, bill, client
):
    invoice = waiting_for_confirmation(partner_api, stripe_standin, bill)
    old = PaymentAttempt.objects.get()
    old_link = payments.confirmation_path(old)
    use_card(partner_api, stripe_standin, OK)
    with sent_on_commit():
        retried = partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "paid"
    old.refresh_from_db()
    assert old.status == "canceled"
    # Stripe was told before the new charge: the old intent can never be confirmed.
    assert intent_statuses(stripe_standin) == ["canceled", "succeeded"]
    page = client.get(old_link).content.decode()
    assert "This invoice is paid" in page and "Confirm payment</button>" not in page
    assert [a["status"] for a in retried.json()["payment_attempts"]] == ["canceled", "succeeded"]


def test_F2_the_replaced_payments_link_points_at_the_live_one(
    shop, partner_api, stripe_standin, bill, client
):
    invoice = waiting_for_confirmation(partner_api, stripe_standin, bill)
    old = PaymentAttempt.objects.get()
    use_card(partner_api, stripe_standin, "4000002500003155")  # another 3-D Secure card
    with sent_on_commit():
        assert partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry").status_code == 200
    new = PaymentAttempt.objects.exclude(pk=old.pk).get()
    assert new.status == "requires_action"
    page = client.get(payments.confirmation_path(old)).content.decode()
    assert "This payment was replaced" in page
    assert payments.confirmation_path(new) in page
    assert "Confirm payment</button>" not in page  # only the live payment can be confirmed
    live_page = client.get(payments.confirmation_path(new)).content.decode()
    assert "Confirm payment</button>" in live_page
    with pytest.raises(Exception):  # noqa: B017 - the stand-in refuses a cancelled intent
        stripe_standin.authenticate(old.stripe_payment_intent, success=True)
    assert intent_statuses(stripe_standin) == ["canceled", "requires_action"]


def test_F2_the_same_link_is_emailed_again_at_most_every_ten_minutes(
    shop, partner_api, stripe_standin, bill, owner_client
):
    invoice = waiting_for_confirmation(partner_api, stripe_standin, bill)
    live = PaymentAttempt.objects.get()
    now = datetime.now(UTC)
    subject = f"Please confirm your payment for invoice {invoice.number}"
    with time_machine.travel(now + timedelta(minutes=11), tick=False), sent_on_commit():
        sent = partner_api.post(f"/api/v1/invoices/{invoice.pk}/confirmation-link")
        assert sent.status_code == 200
        assert payments.confirmation_url(live) in mail.outbox[-1].body
        again = partner_api.post(f"/api/v1/invoices/{invoice.pk}/confirmation-link")
        assert again.status_code == 429 and again.json()["error"]["code"] == "too_soon"
        page = owner_client.post(f"/billing/shop/invoices/{invoice.pk}/resend-link", follow=True)
        assert "ask for it again in 10 minutes" in page.content.decode()
    assert subjects().count(subject) == 2
    with time_machine.travel(now + timedelta(minutes=22), tick=False), sent_on_commit():
        page = owner_client.post(f"/billing/shop/invoices/{invoice.pk}/resend-link", follow=True)
    assert "We emailed the confirmation link again" in page.content.decode()
    assert subjects().count(subject) == 3
    assert PaymentAttempt.objects.count() == 1 and len(stripe_standin.intents()) == 1


def test_F3_retry_without_a_card_says_add_a_card_first_and_starts_nothing(
    shop, partner_api, stripe_standin, bill
):
    bill(T0)
    invoice = Invoice.objects.get()
    mail.outbox.clear()
    response = partner_api.post(f"/api/v1/invoices/{invoice.pk}/retry")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_payment_method"
    assert "Add a card first" in response.json()["error"]["message"]
    invoice.refresh_from_db()
    assert invoice.status == "open" and not PaymentAttempt.objects.exists()
    assert mail.outbox == [] and stripe_standin.intents() == []
    assert Subscription.objects.get().status == "active"


def test_F3_an_invoice_with_no_card_waits_unchased_then_the_card_collects_at_once(
    shop, partner_api, stripe_standin, bill
):
    bill(T0)
    invoice = Invoice.objects.get()
    for day in range(1, 16):
        bill(T0 + timedelta(days=day))
    # No attempt that cannot succeed, no failure emails, no schedule, no suspension.
    assert subjects() == []
    assert not PaymentAttempt.objects.exists() and not Dunning.objects.exists()
    assert Subscription.objects.get().status == "active"
    with time_machine.travel(T0 + timedelta(days=16), tick=False), sent_on_commit():
        use_card(partner_api, stripe_standin, OK)
        for invoice_id in payments.collectable_invoice_ids(account_id=shop.pk):
            tasks.payment_collect_invoice(invoice_id)
    invoice.refresh_from_db()
    assert invoice.status == "paid" and len(stripe_standin.intents()) == 1


def test_F3_a_card_removed_during_retries_stops_the_schedule_with_one_email(
    shop, partner_api, stripe_standin, bill
):
    use_card(partner_api, stripe_standin, DECLINED)
    bill(T0)
    invoice = Invoice.objects.get()
    assert invoice.status == "past_due"
    PaymentMethod.objects.all().delete()  # the card is gone (removed at Stripe, say)
    for day in range(1, 12):
        bill(T0 + timedelta(days=day))
    assert PaymentAttempt.objects.count() == 1  # the declined one; nothing that cannot succeed
    assert subjects().count(f"Payment failed for invoice {invoice.number}") == 1
    assert subjects().count(f"Add a card to pay invoice {invoice.number}") == 1
    use_card(partner_api, stripe_standin, OK)
    bill(T0 + timedelta(days=12))  # the next sweep collects what waited for the card
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert Subscription.objects.get().status == "active"


def test_F5_run_billing_as_of_ahead_of_the_clock_does_not_resend_a_charge_in_flight(
    shop, partner_api, stripe_standin
):
    use_card(partner_api, stripe_standin, OK)
    not_swept = mock.patch("billing.payments.collectable_invoice_ids", return_value=[])
    with time_machine.travel(T0, tick=False), not_swept:
        run_billing(as_of=T0)
    invoice = Invoice.objects.get()
    stripe_standin.proxy.fail_next("lost")  # Stripe charges; the answer never arrives
    payments.invoice_collect(invoice_id=invoice.pk)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "unknown"
    # An operator bills as of next month: the attempt is seconds old by the wall clock.
    assert payments.attempts_reconcile(as_of=datetime.now(UTC) + timedelta(days=31)) == 0
    keys = [k for path, k in stripe_standin.proxy.keys if path == "/v1/payment_intents"]
    assert keys == [attempt.idempotency_key]  # sent once
    later = datetime.now(UTC) + payments.IN_FLIGHT_TIMEOUT + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert payments.attempts_reconcile(as_of=later) == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid" and len(stripe_standin.intents()) == 1
