"""Two pages a newcomer to the demo stumbled on (issue 23): the card form, which answered "Bad
request" to a year typed as YYYY, and the payment-confirmation page, which had no way back."""

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
BACK = "← Back to your invoices"


def log_in(page, live_server, *, username="owner@shop.example", password="pw-owner-123"):
    page.get_by_label("Email or username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def owner_of(account, django_user_model):
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)


def test_the_card_form_takes_a_year_as_yyyy_and_names_a_bad_one(
    make_account, stripe_standin, live_server, page, django_user_model
):
    owner_of(make_account(slug="shop"), django_user_model)
    year = datetime.now(UTC).year + 4  # never a date that passes
    page.goto(live_server.url + "/billing/shop/payment-method")
    log_in(page, live_server)
    page.get_by_placeholder("number").fill("4242 4242 4242 4242")  # spaces, as on the card
    page.get_by_placeholder("exp_month").fill("12")
    page.get_by_placeholder("exp_year").fill(str(year)[:3])  # one digit short
    page.get_by_placeholder("cvc").fill("123")
    page.get_by_role("button", name="Save card").click()
    # The authorisation first: without the box ticked the card does not go to Stripe.
    page.get_by_text("Tick the box authorising us to charge the card").wait_for()
    page.get_by_label("By saving this card you authorise").check()
    page.get_by_role("button", name="Save card").click()
    page.get_by_text("Your card's expiration year is invalid: type it as YY or YYYY.").wait_for()
    page.get_by_placeholder("exp_year").fill(str(year))
    page.get_by_role("button", name="Save card").click()
    page.get_by_text("It is used for the next payments.").wait_for()
    page.goto(live_server.url + "/billing/shop/payment-method")
    page.get_by_text(f"Expires 12/{year}").wait_for()


def test_the_confirmation_page_leads_back_to_the_invoices_whether_waiting_replaced_or_paid(
    make_account, stripe_standin, live_server, page, django_user_model
):
    # The wall clock an hour after the invoice: the links signed then are fresh.
    with time_machine.travel(T0 + timedelta(hours=1), tick=True):
        account = charged_with(make_account, stripe_standin, THREE_DS)
        owner_of(account, django_user_model)
        first = PaymentAttempt.objects.get()
        invoices = "/billing/shop/invoices/"

        page.goto(live_server.url + payments.confirmation_path(first))
        page.get_by_role("button", name="Confirm payment").wait_for()  # waiting for the bank
        assert page.get_by_role("link", name=BACK).get_attribute("href") == invoices
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "confirm-payment-waiting-back-link.png"))

        # Another card, another payment: the first link now says it was replaced.
        payments.payment_method_set(
            account=account, stripe_payment_method=stripe_standin.card("4000002500003155")
        )
        payments.invoice_charge(invoice_id=first.invoice_id, trigger="retry")
        page.goto(live_server.url + payments.confirmation_path(first))
        page.get_by_text("This payment was replaced by a new one").wait_for()
        assert page.get_by_role("link", name=BACK).get_attribute("href") == invoices

        second = PaymentAttempt.objects.exclude(pk=first.pk).get()
        page.goto(live_server.url + payments.confirmation_path(second))
        page.get_by_role("button", name="Confirm payment").click()
        page.get_by_text("Complete authentication").click()  # the bank's 3-D Secure step
        page.get_by_text("This invoice is paid. Thank you!").wait_for()
        page.screenshot(path=str(SHOTS / "confirm-payment-back-link.png"))

        # Back to the invoices tab, through the login for someone who came from the email.
        page.get_by_role("link", name=BACK).click()
        log_in(page, live_server)
        page.wait_for_url(f"**{invoices}")
        invoice = Invoice.objects.get()
        assert invoice.status == "paid"
        page.get_by_text(invoice.number).first.wait_for()
