"""The Billing & Usage page in a real browser over the live server, localstripe and its
Stripe.js. Dates come from the clock at the start of each test, never a fixed "today".

With SCREENSHOTS=<folder> set, the main states are saved at 1280 and 390 px wide (the README's
pictures: `SCREENSHOTS=docs/screenshots pytest tests/browser/test_billing_page.py`).
"""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Membership
from billing import changes, payments
from billing.models import Invoice
from billing.run import run_billing
from plans.models import ScheduledChange, Subscription, SubscriptionAddOn
from plans.money import format_money
from plans.services import subscription_transition
from tests.billing.test_payments import DECLINED, OK, THREE_DS
from tests.billing.test_run_billing import tickets
from tests.metering.helpers import ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = os.environ.get("SCREENSHOTS", "")


def shoot(page, name: str) -> None:
    """Save the page at desktop and phone widths, when asked to (SCREENSHOTS)."""
    if not SHOTS:
        return
    folder = ROOT / SHOTS
    folder.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture
def shop(make_account, stripe_standin, django_user_model):
    """A shop on Basic with Automate and Voice, opened 10 days ago, its first invoice paid,
    and some traffic: billable tickets over the past days, a few still pending (A5)."""
    opened = timezone.now() - timedelta(days=10)
    with time_machine.travel(opened, tick=False):
        account = make_account(
            slug="shop",
            plan="basic",
            addons=[("automate", "automate-100"), ("voice", "voice-20")],
            company="Shop SAS",
            country="FR",
        )
        payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
        run_billing(as_of=opened)
        for invoice in Invoice.objects.filter(account=account):
            payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    now = timezone.now()
    for days_ago in range(9, 0, -1):
        batch = tickets(12 + 3 * days_ago, now - timedelta(days=days_ago))
        ingest(account, batch, now=now)
    automations = [  # resolved by Automate yesterday: pending until their 72 h pass (A5)
        {
            "id": f"auto-{i}",
            "type": "automation",
            "ticket": f"auto-{i}",
            "occurred_at": now - timedelta(days=1, minutes=i),
            "feature": "order_management",
            "outcome": "resolved",
        }
        for i in range(3)
    ]
    ingest(account, automations, now=now)
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def log_in(page, live_server):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@shop.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Billing & Usage").click()
    page.get_by_role("heading", name="Billing cycle").wait_for()


def test_usage_forecast_and_why_a_ticket_was_billed(shop, live_server, page):
    log_in(page, live_server)
    shoot(page, "overview")
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Usage"
    ).click()
    helpdesk = page.locator("#meter-helpdesk_tickets")
    helpdesk.get_by_text("/ 300 included").wait_for()
    assert (
        "FORECAST" in helpdesk.inner_text().upper()
        and helpdesk.locator("figure.chart svg rect").count()
    )
    automate = page.locator("#meter-automated_interactions")
    automate.get_by_text("waiting for their 72-hour window").wait_for()  # pending apart
    assert automate.locator(".facts dd").first.inner_text().startswith("3 ")
    shoot(page, "usage")
    ticket = f"{timezone.now() - timedelta(days=3):%m%d}-0"
    page.get_by_label("Ticket id").fill(ticket)
    page.get_by_role("button", name="Explain").click()  # htmx swaps the answer in place
    page.locator("#why-result").get_by_text("H1").wait_for()
    assert "An agent or a rule sent a public reply" in page.locator("#why-result").inner_text()
    assert page.url.endswith("/billing/shop/usage/")  # no full page load


def test_a_downgrade_is_warned_then_bannered_then_cancelled(shop, live_server, page):
    log_in(page, live_server)
    page.get_by_role("link", name="Change plan").click()
    page.get_by_role("button", name="Downgrade to Starter").click()
    warning = page.get_by_role("alert")
    warning.get_by_text("it takes effect at the end of your billing cycle").wait_for()
    shoot(page, "change-plan-downgrade-warning")
    page.get_by_role("button", name="Schedule the downgrade").click()
    end = Subscription.objects.get(account=shop).current_period_end
    banner = page.locator(".banner.scheduled")
    banner.get_by_text(f"Basic → Starter plan from {end:%b} {end.day}, {end.year}").wait_for()
    shoot(page, "scheduled-change-banner")
    page.get_by_role("button", name="Cancel this change").click()
    page.get_by_text("The scheduled change is cancelled").wait_for()
    assert page.locator(".banner.scheduled").count() == 0
    assert ScheduledChange.objects.get().status == "canceled"


def test_cancel_at_the_cycle_end_is_warned_then_bannered_then_undone(shop, live_server, page):
    log_in(page, live_server)
    page.get_by_role("link", name="Change plan").click()
    end = Subscription.objects.get(account=shop).current_period_end
    last = end - timedelta(microseconds=1)  # the last day covered, not the end boundary
    ends_on = f"{last:%b} {last.day}, {last.year}"
    page.locator("#cancel").get_by_text(f"everything works until {ends_on}").wait_for()
    page.get_by_role("link", name="Cancel subscription…").click()
    warning = page.locator("#cancel-confirm .warning-label")
    warning.get_by_text(f"everything works until {ends_on}, then nothing renews").wait_for()
    page.get_by_role("button", name="Cancel my subscription").click()
    banner = page.locator(".banner.scheduled")
    banner.get_by_text(f"Your subscription ends: everything works until {ends_on}").wait_for()
    assert ScheduledChange.objects.get(cancel=True).status == "scheduled"
    shoot(page, "subscription-ends-banner")
    page.get_by_role("link", name="Usage").first.click()  # the banner follows every page
    banner.get_by_text(f"Your subscription ends: everything works until {ends_on}").wait_for()
    page.get_by_role("button", name="Undo: keep my subscription").click()
    page.get_by_text("Your subscription continues").wait_for()
    assert page.locator(".banner.scheduled").count() == 0
    assert ScheduledChange.objects.get(cancel=True).status == "canceled"
    assert Subscription.objects.get(account=shop).ended_at is None


def test_an_upgrade_shows_the_prorated_amount_and_pays_it(shop, live_server, page):
    log_in(page, live_server)
    page.get_by_role("link", name="Change plan").click()
    page.get_by_role("button", name="Upgrade to Pro").click()
    button = page.get_by_role("button", name="Upgrade and pay")
    button.wait_for()
    button.click()
    page.get_by_text("is paid. Thank you!").wait_for()
    invoice = Invoice.objects.get(account=shop, reason="upgrade")
    assert invoice.status == "paid" and invoice.total_minor > 0
    assert format_money(invoice.total_minor, "USD") in page.content()
    assert Subscription.objects.get(account=shop).plan.code == "pro"


def test_add_then_remove_an_add_on(shop, live_server, page):
    log_in(page, live_server)
    page.get_by_role("link", name="Manage add-ons").click()
    sms = page.locator("#addon-sms")
    sms.get_by_label("SMS 75").check()
    sms.get_by_role("button", name="Add SMS").click()
    page.get_by_role("button", name="Upgrade and pay").click()
    page.get_by_text("is paid. Thank you!").wait_for()
    assert SubscriptionAddOn.objects.filter(tier__code="sms-75").exists()
    page.get_by_role("link", name="Manage add-ons").click()
    page.locator("#addon-sms").get_by_label("Remove the add-on").check()
    page.locator("#addon-sms").get_by_role("button", name="Change SMS").click()
    page.get_by_role("button", name="Schedule the downgrade").click()
    page.locator(".banner.scheduled").get_by_text("SMS add-on: SMS 75 → removed").wait_for()


def test_pdf_download_and_billing_details_with_one_invalid_field(
    shop, live_server, page, vies_standin
):
    log_in(page, live_server)
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Invoices"
    ).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="PDF").first.click()
    assert download.value.suggested_filename.startswith("invoice-")
    page.get_by_role("link", name="Billing details").click()
    page.get_by_label("VAT id").fill("DE123456789")
    page.get_by_role("button", name="Save billing details").click()
    page.get_by_text("A VAT id from FR starts with FR.").wait_for()
    shoot(page, "billing-details-invalid")
    page.get_by_label("VAT id").fill("FR40303265045")
    page.get_by_role("button", name="Save billing details").click()
    page.get_by_text("Billing details saved").wait_for()
    # Asked of VIES after the commit (the stand-in does not know this id).
    page.get_by_text("VIES says this VAT id is not valid").wait_for()
    shop.refresh_from_db()
    assert (shop.vat_id, shop.tax_id_status) == ("FR40303265045", "invalid")


def test_a_three_d_secure_card_update_then_a_confirmed_payment(shop, live_server, page):
    log_in(page, live_server)
    page.get_by_role("link", name="Update card").click()
    page.get_by_placeholder("number").fill(THREE_DS)
    page.get_by_placeholder("exp_month").fill("12")
    page.get_by_placeholder("exp_year").fill(
        str(datetime.now(UTC).year % 100 + 4)
    )  # never a date that passes
    page.get_by_placeholder("cvc").fill("123")
    page.get_by_label("By saving this card you authorise").check()
    page.get_by_role("button", name="Save card").click()
    page.get_by_text("Complete authentication").click()  # the bank's 3-D Secure step
    page.get_by_text("It is used for the next payments.").wait_for()
    assert "•••• 3184" in page.content()
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Payment method"
    ).click()
    page.locator("#card").wait_for()
    shoot(page, "payment-method")
    # An upgrade charged to it needs the customer's confirmation (F2).
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Plan", exact=True
    ).click()
    page.get_by_role("button", name="Upgrade to Pro").click()
    page.get_by_role("button", name="Upgrade and pay").click()
    page.get_by_role("button", name="Confirm payment").click()
    page.get_by_text("Complete authentication").click()
    page.get_by_text("This invoice is paid. Thank you!").wait_for()
    assert Invoice.objects.get(account=shop, reason="upgrade").status == "paid"


def test_retry_after_updating_the_card_lifts_the_suspension(
    shop, live_server, page, stripe_standin
):
    payments.payment_method_set(account=shop, stripe_payment_method=stripe_standin.card(DECLINED))
    subscription = Subscription.objects.get(account=shop)
    with time_machine.travel(subscription.current_period_end, tick=False):
        run_billing(as_of=subscription.current_period_end)
    invoice = Invoice.objects.get(account=shop, reason="period_close")
    payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    subscription_transition(
        subscription_id=subscription.pk, to="suspended", reason="test", at=timezone.now()
    )
    log_in(page, live_server)
    page.get_by_text("Your helpdesk is suspended.").wait_for()
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Invoices"
    ).click()
    page.get_by_text("The bank declined the payment").first.wait_for()
    shoot(page, "invoices-past-due")
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Payment method"
    ).click()
    page.get_by_placeholder("number").fill(OK)
    page.get_by_placeholder("exp_month").fill("12")
    page.get_by_placeholder("exp_year").fill(
        str(datetime.now(UTC).year % 100 + 4)
    )  # never a date that passes
    page.get_by_placeholder("cvc").fill("123")
    page.get_by_label("By saving this card you authorise").check()
    page.get_by_role("button", name="Save card").click()
    page.get_by_text("can be paid with it now").wait_for()
    page.get_by_role("button", name="Pay all outstanding").click()
    page.get_by_text("is paid. Thank you!").wait_for()
    assert page.get_by_text("Your helpdesk is suspended.").count() == 0
    assert Subscription.objects.get(account=shop).status == "active"
    invoice.refresh_from_db()
    assert invoice.status == "paid"


@pytest.fixture
def ended_shop(make_account, stripe_standin, django_user_model):
    """A shop whose subscription was canceled and ended ten days ago (its card still saved)."""
    opened = timezone.now() - timedelta(days=45)
    with time_machine.travel(opened, tick=False):
        account = make_account(slug="shop", plan="basic")
        payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
        run_billing(as_of=opened)
        for invoice in Invoice.objects.filter(account=account):
            payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    with time_machine.travel(opened + timedelta(days=5), tick=False):
        changes.subscription_cancel_at_period_end(account=account)
    end = Subscription.objects.get(account=account).current_period_end
    with time_machine.travel(end, tick=False):
        run_billing(as_of=end)
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def test_a_merchant_whose_subscription_ended_starts_again_and_pays(ended_shop, live_server, page):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@shop.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Billing & Usage").click()
    page.get_by_text("Your subscription has ended: service ran until").first.wait_for()
    shoot(page, "subscription-ended")
    page.get_by_role("link", name="Choose a plan to start again").click()
    pro = page.locator(".plan-card", has_text="Pro")
    pro.get_by_role("button", name="Start monthly").wait_for()
    shoot(page, "start-again-plans")
    pro.get_by_role("button", name="Start monthly").click()
    button = page.get_by_role("button", name="Start and pay $360.00")
    button.wait_for()
    shoot(page, "start-again-confirm")
    button.click()
    page.get_by_text("Welcome back: you are on Pro from today.").wait_for()
    page.get_by_text("is paid. Thank you!").wait_for()
    shoot(page, "started-again")
    new = Subscription.objects.get(account=ended_shop, ended_at=None)
    assert (new.plan.code, new.status) == ("pro", "active")
    assert Invoice.objects.get(subscription=new).status == "paid"
