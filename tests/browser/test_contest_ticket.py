"""A merchant contests a billed ticket in a real browser (issue 26, item 3): "Why was this
billed?" on the Usage tab explains it, "Contest this ticket" files it with a reason and a
comment, the page says it is waiting; an operator accepts it in the console's Contested
tickets; the merchant reloads and reads the outcome. Dates come from the clock at the start of
the test, never a fixed "today".

With SCREENSHOTS=<folder> set, the Why page with the outcome is saved
(`SCREENSHOTS=docs/screenshots pytest tests/browser/test_contest_ticket.py`)."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Membership
from billing.models import TicketDispute
from billing.run import run_billing
from metering.models import Charge
from tests.billing.test_ticket_disputes import ticket_events
from tests.browser.test_console import log_in_as_operator
from tests.metering.helpers import ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = os.environ.get("SCREENSHOTS", "")
TICKET = "T-4821"


@pytest.fixture
def shop(make_account, django_user_model):
    """A shop on Basic opened 10 days ago; yesterday a vendor's auto-responder opened ticket
    T-4821 and an agent answered it: billed. And an honest ticket beside it."""
    opened = timezone.now() - timedelta(days=10)
    with time_machine.travel(opened, tick=False):
        account = make_account(slug="shop", plan="basic")
        run_billing(as_of=opened)
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    events = ticket_events(TICKET, yesterday, requester="noreply@vendor.example")
    events += ticket_events("T-4822", yesterday + timedelta(hours=1))
    ingest(account, events, now=now)
    assert Charge.objects.get(subject=TICKET, meter="helpdesk_tickets").status == "final"
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def test_a_merchant_contests_a_ticket_and_reads_the_operators_decision(
    shop, browser, live_server, page, django_user_model
):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@shop.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Billing & Usage").click()
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Usage"
    ).click()
    page.get_by_label("Ticket id").fill(TICKET)
    page.get_by_role("button", name="Explain").click()  # htmx swaps the answer in place
    result = page.locator("#why-result")
    result.get_by_role("heading", name="Contest this ticket").wait_for()
    result.get_by_label("Why should it not have been billed?").select_option(
        label="auto-reply loop"
    )
    result.get_by_label("Comment").fill("Our auto-responder and the vendor's answered each other")
    result.get_by_role("button", name="Contest this ticket").click()
    page.get_by_text(f"Ticket {TICKET} contested: we will look at it").wait_for()
    disputes = page.locator("#disputes")
    assert "Waiting for a decision" in disputes.inner_text()
    assert page.get_by_role("button", name="Contest this ticket").count() == 0
    dispute = TicketDispute.objects.get(account=shop, ticket=TICKET)
    assert dispute.status == "open"

    # The operator, in a browser of their own.
    operator_context = browser.new_context()
    console = operator_context.new_page()
    console.set_default_timeout(15_000)
    log_in_as_operator(console, live_server, django_user_model)
    console.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name="Contested tickets"
    ).click()
    row = console.locator(f"#ticket-dispute-{dispute.pk}")
    assert TICKET in row.inner_text() and "Auto-reply loop" in row.inner_text()
    row.get_by_role("link", name="Accept").click()
    console.get_by_label("Reason").fill("The vendor's auto-responder: a loop, as they say")
    console.get_by_role("button", name="Confirm: accept").click()
    console.get_by_text(f"Ticket {TICKET}: dispute accepted").wait_for()
    operator_context.close()

    page.reload()
    outcome = page.locator("#disputes")
    outcome.get_by_text("Excluded: this period is rated without it").wait_for()
    assert "Accepted" in outcome.inner_text()
    assert "not billed: excluded after your dispute" in page.locator("#why").inner_text()
    assert Charge.objects.get(subject=TICKET, meter="helpdesk_tickets").status == "excluded"
    if SHOTS:
        folder = ROOT / SHOTS
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "contest-ticket.png"), full_page=True)
