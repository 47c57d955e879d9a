"""The operator console in a real browser: an operator finds a past-due invoice in the queue,
retries it once the merchant has updated the card, sees it paid, the account reactivated and
the audit entries. On a phone (390 px) no console page is wider than the screen, and a retry
says what happened.

With SCREENSHOTS=<folder> set, the queue, the invoice and the account are saved at 1280 px,
and the queue at 390 px (`SCREENSHOTS=docs/screenshots pytest tests/browser/test_console.py`)."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from billing import payments
from billing.models import AccountCredit, Invoice, Refund
from billing.run import run_billing
from plans.models import Subscription
from plans.services import subscription_transition
from tests.billing.test_payments import DECLINED, OK
from tests.console.conftest import operators_group

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = os.environ.get("SCREENSHOTS", "")


def shoot(page, name: str) -> None:
    if SHOTS:
        folder = ROOT / SHOTS
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.fixture
def suspended_shop(make_account, stripe_standin):
    """Opened 20 days ago; its first invoice declined and the retries ran out: suspended."""
    opened = timezone.now() - timedelta(days=20)
    with time_machine.travel(opened, tick=False):
        account = make_account(slug="shop", plan="basic")
        payments.payment_method_set(
            account=account, stripe_payment_method=stripe_standin.card(DECLINED)
        )
        run_billing(as_of=opened)  # issues the first invoice and charges it: declined
        invoice = Invoice.objects.get(account=account)
    subscription_transition(
        subscription_id=invoice.subscription_id,
        to="suspended",
        reason=f"invoice {invoice.number} unpaid after retries",
        at=opened + timedelta(days=14),
    )
    other = make_account(slug="bakery", plan="pro")  # a second line in the queue
    Invoice.objects.create(
        account=other,
        subscription=Subscription.objects.get(account=other),
        reason="upgrade",
        status="past_due",
        number="2026-900001",
        currency="USD",
        period_start=opened,
        period_end=opened + timedelta(days=30),
        total_minor=12_000,
        issued_at=opened,
    )
    return account, invoice


def log_in_as_operator(page, live_server, django_user_model) -> None:
    user = django_user_model.objects.create_user(
        "olivia", email="olivia@ops.example", password="pw-operator-1", is_staff=True
    )
    user.groups.add(operators_group())
    page.goto(live_server.url + "/login/?next=/console/")
    page.get_by_label("Email or username").fill("olivia")
    page.get_by_label("Password").fill("pw-operator-1")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Invoices that need a person").wait_for()


PHONE = {"width": 390, "height": 844}


def assert_fits(page, width: int = PHONE["width"]) -> None:
    """No sideways scroll: the page is laid out no wider than the screen (the failure names
    what sticks out), once the page and its stylesheet have loaded."""
    page.wait_for_load_state("load")
    laid_out = page.evaluate("document.documentElement.scrollWidth")
    assert laid_out <= width, (
        page.url,
        laid_out,
        page.evaluate(
            """w => [...document.querySelectorAll("main *")]
                .filter(e => e.getBoundingClientRect().right > w)
                .slice(0, 5)
                .map(e => `${e.tagName}.${e.className}: ${(e.textContent || "").slice(0, 40)}`)""",
            width,
        ),
    )


def test_the_console_on_a_phone(
    suspended_shop, stripe_standin, live_server, page, django_user_model
):
    account, invoice = suspended_shop
    page.set_viewport_size(PHONE)
    log_in_as_operator(page, live_server, django_user_model)
    assert_fits(page)
    row = page.locator(f"#queue-{invoice.pk}")
    assert row.is_visible() and "$60.00" in row.inner_text()
    # A stacked row: each cell is a line as wide as the row, its value beside its column's name.
    row_width = row.bounding_box()["width"]
    for cell in row.locator("td").all():
        assert cell.bounding_box()["width"] == row_width, cell.inner_text()
    shoot(page, "console-phone")

    page.get_by_role("link", name=invoice.number).click()
    page.get_by_role("heading", name="Payment attempts").wait_for()
    assert_fits(page)
    # Every action is on the screen, none past its right edge.
    for action in page.locator('[aria-label="Actions"] a').all():
        box = action.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    first = page.locator("#attempt-1").inner_text()
    intent = Invoice.objects.get(pk=invoice.pk).attempts.get(number=1).stripe_payment_intent
    assert "first charge (automatic)" in first and intent.startswith("pi_") and intent in first

    # The card is still the declined one: the retry says so, and why, in plain words.
    page.get_by_role("link", name="Retry now").click()
    page.get_by_label("Reason").wait_for()
    assert_fits(page)
    page.get_by_label("Reason").fill("Customer says the card works again")
    page.get_by_role("button", name="Confirm: retry now").click()
    page.locator(".flash.error").get_by_text(
        "Declined: the bank declined the payment. Contact your bank or use another card."
    ).wait_for()
    assert_fits(page)
    assert "retry by an operator" in page.locator("#attempt-2").inner_text()
    assert "pi_" in page.locator("#attempt-2").inner_text()

    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
    page.get_by_role("link", name="Retry now").click()
    page.get_by_label("Reason").fill("Merchant updated the card")
    confirm = page.get_by_role("button", name="Confirm: retry now")
    confirm.scroll_into_view_if_needed()
    assert confirm.is_visible()
    confirm.click()
    page.locator(".flash.success").get_by_text("Paid: $60.00 charged to Visa •••• 4242.").wait_for()
    assert_fits(page)

    # Every other page of the console fits too.
    for path in (
        f"/console/accounts/{account.pk}/",
        f"/console/accounts/{account.pk}/suspend/",
        "/console/audit/",
        "/console/figures/",
        "/console/?q=shop",
    ):
        page.goto(live_server.url + path)
        page.locator("main").wait_for()
        assert_fits(page)


def test_an_operator_retries_a_past_due_invoice_after_the_card_was_updated(
    suspended_shop, stripe_standin, live_server, page, django_user_model
):
    account, invoice = suspended_shop
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in_as_operator(page, live_server, django_user_model)
    row = page.locator(f"#queue-{invoice.pk}")
    assert "$60.00" in row.inner_text() and "Past due" in row.inner_text()
    shoot(page, "console-queue")

    page.get_by_label("Search").fill("shop")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**q=shop**")
    assert page.locator("table.queue tbody tr").count() == 1
    page.get_by_role("link", name=invoice.number).click()
    page.get_by_text("The bank declined").first.wait_for()  # the reason, in words

    page.get_by_role("link", name="Retry now").click()
    page.get_by_text("Charges the account's default card now").wait_for()
    page.get_by_role("button", name="Confirm: retry now").click()
    # The reason is required: the browser refuses to send the form without one.
    assert page.get_by_label("Reason").evaluate("e => e.validity.valueMissing")
    assert Invoice.objects.get(pk=invoice.pk).status == "past_due"
    page.get_by_label("Reason").fill("Merchant updated the card; called us")
    page.get_by_role("button", name="Confirm: retry now").click()
    page.get_by_text("Paid: $60.00 charged to Visa •••• 4242.").wait_for()
    assert page.locator("h2 .badge").first.inner_text() == "Paid"
    history = page.locator("table.audit").inner_text()
    assert "operator: retry now" in history and "Merchant updated the card" in history
    assert "past due → paid" in history and "olivia" in history
    shoot(page, "console-invoice")

    page.get_by_role("link", name="Shop (shop)").click()
    page.get_by_text("Subscription active").wait_for()
    assert "suspended → active" in page.locator("body").inner_text()
    shoot(page, "console-account")
    assert Subscription.objects.get(account=account).status == "active"


def test_an_operator_refunds_part_of_a_paid_invoice_to_the_card(
    suspended_shop, stripe_standin, live_server, page, django_user_model
):
    """Issue 26: a credit note of 40.00 on a paid 60.00 invoice, 25.00 of it back to the card
    and 15.00 left as account credit; the invoice's page says so."""
    account, invoice = suspended_shop
    payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
    payments.invoice_charge(invoice_id=invoice.pk, trigger="retry")
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in_as_operator(page, live_server, django_user_model)
    page.goto(f"{live_server.url}/console/invoices/{invoice.pk}/")
    page.get_by_role("link", name="Issue a credit note").click()
    page.get_by_label("Amount to credit, before tax").fill("40.00")
    page.get_by_label("Refund to the card, tax included").fill("25.00")
    page.get_by_label("Description for the customer (printed on the credit note)").fill(
        "Outage on Nov 12"
    )
    page.get_by_label("Reason").fill("Merchant asked for money back, agreed by phone")
    page.get_by_role("button", name="Confirm: issue a credit note").click()
    page.get_by_text("goes back to the card").wait_for()
    message = page.locator("body").inner_text()
    (refund,) = Refund.objects.filter(credit_note__credited_invoice=invoice)
    number = refund.credit_note.number  # the year's own series: not a fixed year
    assert f"Credit note {number} issued for $40.00: $25.00 goes back to the card" in message
    assert "$15.00 is the account's credit" in message
    assert (refund.amount_minor, refund.status) == (2500, "succeeded")
    (credit,) = AccountCredit.objects.filter(account=account)
    assert credit.amount_minor == 1500
    (intent,) = [i for i in stripe_standin.intents() if i.status == "succeeded"]
    assert intent.amount == 6000  # one charge; the refund went back on it
