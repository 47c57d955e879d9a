"""The payment pages in a real browser, with the stand-in's Stripe.js."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from accounts.models import Membership
from billing import payments
from billing.models import Invoice, PaymentAttempt
from billing.run import run_billing
from plans.models import Subscription
from tests.billing.test_payments import DECLINED, THREE_DS, not_charged_by_run_billing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
T0 = datetime(2026, 11, 1, tzinfo=UTC)
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def charged_with(make_account, stripe_standin, number):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(number))
    with not_charged_by_run_billing():
        run_billing(as_of=T0)
    for invoice_id in Invoice.objects.values_list("pk", flat=True):
        payments.invoice_collect(invoice_id=invoice_id)
    return account


def test_F2_the_customer_confirms_on_the_secure_page_without_logging_in(
    make_account, stripe_standin, live_server, page
):
    charged_with(make_account, stripe_standin, THREE_DS)
    attempt = PaymentAttempt.objects.get()
    assert attempt.invoice.status == "requires_confirmation"
    page.goto(live_server.url + payments.confirmation_path(attempt))
    page.get_by_role("button", name="Confirm payment").click()
    page.get_by_text("Complete authentication").click()  # the bank's 3-D Secure step
    page.get_by_text("This invoice is paid. Thank you!").wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "confirm-payment-paid.png"))
    assert Invoice.objects.get().status == "paid"


def test_F3_the_merchant_updates_the_card_then_retries_the_payment(
    make_account, stripe_standin, live_server, page, django_user_model
):
    account = charged_with(make_account, stripe_standin, DECLINED)
    assert Invoice.objects.get().status == "past_due"
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@shop.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("The bank declined the payment").wait_for()  # the reason, in words
    page.get_by_role("link", name="Update").click()
    page.get_by_placeholder("number").fill("4242424242424242")
    page.get_by_placeholder("exp_month").fill("12")
    page.get_by_placeholder("exp_year").fill(
        str(datetime.now(UTC).year % 100 + 4)
    )  # never a date that passes
    page.get_by_placeholder("cvc").fill("123")
    page.get_by_label("By saving this card you authorise").check()
    page.get_by_role("button", name="Save card").click()
    page.get_by_text("It is used for the next payments.").wait_for()
    page.get_by_role("link", name="Invoices").click()  # the Billing & Usage page's history
    page.get_by_role("button", name="Retry payment").click()
    page.get_by_text("is paid. Thank you!").wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "retry-payment-paid.png"), full_page=True)
    assert Invoice.objects.get().status == "paid"
    assert Subscription.objects.get(account=account).status == "active"
