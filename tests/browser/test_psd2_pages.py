"""PSD2 in a real browser: a payment waiting for the bank is confirmed, never doubled. The
merchant's Retry leads to the waiting payment; the link can be emailed again; after a new card,
the old link says it was replaced and points at the live payment."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from accounts.models import Membership
from billing import payments
from billing.models import Invoice, PaymentAttempt
from tests.billing.test_payments import THREE_DS
from tests.browser.test_payment_pages import charged_with

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
T0 = datetime(2026, 11, 1, tzinfo=UTC)
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_F2_waiting_payment_is_confirmed_not_doubled_and_a_replaced_link_says_so(
    make_account, stripe_standin, live_server, page, django_user_model
):
    # The wall clock an hour after the invoice: the links signed then are fresh.
    with time_machine.travel(T0 + timedelta(hours=1), tick=True):
        account = charged_with(make_account, stripe_standin, THREE_DS)
        user = django_user_model.objects.create_user("owner@shop.example", password="pw-own-123")
        Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
        first = PaymentAttempt.objects.get()
        page.goto(live_server.url + "/login/")
        page.get_by_label("Email or username").fill("owner@shop.example")
        page.get_by_label("Password").fill("pw-own-123")
        page.get_by_role("button", name="Log in").click()
        page.goto(live_server.url + "/billing/shop/invoices/")
        page.get_by_role("button", name="Email the link again").click()
        page.get_by_text("ask for it again in").wait_for()  # the first email went out just now
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "invoices-awaiting-confirmation.png"), full_page=True)
        # Another 3-D Secure card, then Retry: the waiting payment is replaced, not doubled.
        payments.payment_method_set(
            account=account, stripe_payment_method=stripe_standin.card("4000002500003155")
        )
        page.goto(live_server.url + "/billing/shop/invoices/")
        assert page.get_by_role("button", name="Retry payment").count() == 0
        page.get_by_role("button", name="Pay with the new card").click()
        page.get_by_role("button", name="Confirm payment").wait_for()  # the new payment's page
        second = PaymentAttempt.objects.exclude(pk=first.pk).get()
        first.refresh_from_db()
        assert first.status == "canceled" and second.status == "requires_action"
        page.goto(live_server.url + payments.confirmation_path(first))
        page.get_by_text("This payment was replaced by a new one").wait_for()
        page.screenshot(path=str(SHOTS / "confirm-payment-replaced.png"))
        page.get_by_role("link", name="Confirm the new payment").click()
        page.get_by_role("button", name="Confirm payment").click()
        page.get_by_text("Complete authentication").click()
        page.get_by_text("This invoice is paid. Thank you!").wait_for()
    assert Invoice.objects.get().status == "paid"
    assert [i.status for i in stripe_standin.intents()] == ["canceled", "succeeded"]
