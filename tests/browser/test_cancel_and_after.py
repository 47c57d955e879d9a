"""Cancelling with a confirmation step, then life after the end, in a real browser (issue 23).
Dates come from the clock at the start of each test, never a fixed "today".

With SCREENSHOTS=<folder> set, the confirmation step is saved at 1280 px (the README's
`cancel-confirmation.png`) and 390 px (`cancel-confirmation-390.png`)."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Membership
from billing import changes, payments
from billing.models import Invoice
from billing.run import run_billing
from plans.models import ScheduledChange, Subscription
from plans.periods import format_last_day, format_period
from tests.billing.test_payments import OK
from tests.billing.test_run_billing import tickets
from tests.browser.test_billing_page import ROOT, SHOTS, log_in
from tests.metering.helpers import ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shoot_confirmation(page) -> None:
    if not SHOTS:
        return
    folder = ROOT / SHOTS
    folder.mkdir(parents=True, exist_ok=True)
    for width, name in ((1280, "cancel-confirmation.png"), (390, "cancel-confirmation-390.png")):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(folder / name), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture
def shop(make_account, stripe_standin, django_user_model):
    """A shop on Basic opened at midnight UTC 20 days ago (so its last day of service and the
    first day after it are two dates), its first invoice paid, 320 tickets so far: 20 over the
    300 included, a block of 100 billed as overage (P2)."""
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    opened = midnight - timedelta(days=20)
    with time_machine.travel(opened, tick=False):
        account = make_account(slug="shop", plan="basic")
        payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
        run_billing(as_of=opened)
        for invoice in Invoice.objects.filter(account=account):
            payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    busy = opened + timedelta(days=2)
    with time_machine.travel(busy + timedelta(days=5), tick=False):
        ingest(account, tickets(320, busy), now=busy + timedelta(days=5))
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def test_cancel_is_confirmed_with_a_reason_emailed_and_the_overview_says_it_ends(
    shop,
    live_server,
    page,
    mailoutbox,
):
    until = format_last_day(Subscription.objects.get(account=shop).current_period_end)
    log_in(page, live_server)
    page.get_by_role("link", name="Change plan").click()
    page.get_by_role("link", name="Cancel subscription…").click()
    # The confirmation step: what ends when, before anything is cancelled.
    step = page.locator("#cancel-confirm")
    step.get_by_text(f"everything works until {until}, then nothing renews").wait_for()
    step.get_by_text("Overage so far: $40.00").wait_for()  # what the final invoice carries
    for fact in ("Last day of service", "Fees", "Usage of your last period", "Final invoice"):
        assert step.get_by_text(fact, exact=True).count() == 1, fact
    assert not ScheduledChange.objects.exists()
    shoot_confirmation(page)
    page.get_by_label("We do not use it enough").check()
    page.get_by_label("Anything we could have done better?").fill("Too few tickets for now.")
    page.get_by_role("button", name="Cancel my subscription").click()
    page.get_by_text(f"Cancelled: your subscription runs until {until}").wait_for()
    cycle = page.locator("section.card", has=page.get_by_role("heading", name="Billing cycle"))
    cycle.get_by_text(f"Your subscription ends: everything works until {until}").wait_for()
    assert "Renews" not in page.content()
    change = ScheduledChange.objects.get(cancel=True)
    assert (change.cancel_reason, change.cancel_comment) == (
        "not_using",
        "Too few tickets for now.",
    )
    [mail] = [m for m in mailoutbox if m.subject.startswith("Your subscription ends")]
    assert mail.subject == f"Your subscription ends: it runs until {until}"
    assert mail.to[0] == shop.billing_email


@pytest.fixture
def ended_with_history(make_account, stripe_standin, django_user_model):
    """A shop opened 75 days ago with 40 tickets in its first period, canceled early in its
    second cycle, which ended about two weeks ago."""
    opened = timezone.now() - timedelta(days=75)
    with time_machine.travel(opened, tick=False):
        account = make_account(slug="shop", plan="basic")
        payments.payment_method_set(account=account, stripe_payment_method=stripe_standin.card(OK))
        run_billing(as_of=opened)
    with time_machine.travel(opened + timedelta(days=10), tick=False):
        ingest(account, tickets(40, opened + timedelta(days=3)), now=opened + timedelta(days=10))
    first = Subscription.objects.get(account=account)
    first_period = (first.current_period_start, first.current_period_end)
    with time_machine.travel(first_period[1], tick=False):
        run_billing(as_of=first_period[1])
    with time_machine.travel(first_period[1] + timedelta(days=2), tick=False):
        changes.subscription_cancel_at_period_end(account=account, reason="not_using")
    end = Subscription.objects.get(account=account).current_period_end
    with time_machine.travel(end, tick=False):
        run_billing(as_of=end)
    assert Subscription.objects.get(account=account).ended_at == end
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    account.first_period = first_period
    return account


def test_after_the_end_past_usage_and_invoices_stay_readable_and_add_ons_lead_to_start_again(
    ended_with_history,
    live_server,
    page,
):
    start, end = ended_with_history.first_period
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@shop.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Billing & Usage").click()
    page.get_by_text("Your subscription has ended: service ran until").first.wait_for()
    tabs = page.get_by_role("navigation", name="Billing sections")
    # Usage: the last period by default, and a past one through the picker.
    tabs.get_by_role("link", name="Usage").click()
    assert "No subscription" not in page.content()
    page.get_by_label("Usage period").select_option(f"{start:%Y-%m}")
    page.get_by_role("button", name="Show").click()
    page.get_by_text(f"Usage period {format_period(start, end)} · over.").wait_for()
    helpdesk = page.locator("#meter-helpdesk_tickets")
    assert helpdesk.locator(".meter-count").inner_text() == "40 / 300 included"
    # Invoices and their documents.
    tabs.get_by_role("link", name="Invoices").click()
    numbers = Invoice.objects.filter(account=ended_with_history).values_list("number", flat=True)
    table = page.locator("table.invoices")
    table.wait_for()
    for number in numbers:
        assert table.get_by_text(number).count() >= 1, number
    with page.expect_download() as download:
        page.get_by_role("link", name="PDF").first.click()
    assert download.value.suggested_filename.startswith("invoice-")
    # Add-ons: no "set by our team", the way back instead.
    tabs.get_by_role("link", name="Add-ons").click()
    assert "set by our team" not in page.content()
    page.get_by_role("link", name="Choose a plan to start again").click()
    page.locator(".plan-card", has_text="Pro").get_by_role(
        "button", name="Start monthly"
    ).wait_for()
