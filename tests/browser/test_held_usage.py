"""A merchant reviews a usage spike in a real browser (issue 27): the banner on the Billing &
Usage pages says how many tickets came against the usual and how many are held, "Review them"
leads to the Usage tab's "Held for review" card, and Release bills them; the card then lists
the spike as decided, by whom. Dates come from the clock at the start of the test, never a fixed
"today".

With SCREENSHOTS=<folder> set, the banner and the held card are saved before the release
(`SCREENSHOTS=docs/screenshots pytest tests/browser/test_held_usage.py`)."""

import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Membership
from billing import spike_guard
from billing.run import run_billing
from metering.models import Charge, UsageAnomaly, UsageDay
from plans import periods
from plans.models import Subscription
from tests.billing.test_ticket_disputes import ticket_events
from tests.metering.helpers import ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = os.environ.get("SCREENSHOTS", "")
USUAL, SPIKE = 40, 412  # Basic includes 300 helpdesk tickets: the spike alone is overage


@pytest.fixture
def shop(make_account, django_user_model):
    """A shop on Basic opened 70 days ago, 40 helpdesk tickets on each of its last 8 same
    weekdays, and yesterday a spam wave of 412 from 412 senders; the hourly check held the
    372 over the usual."""
    now = timezone.now()
    opened = now - timedelta(days=70)
    with time_machine.travel(opened, tick=False):
        account = make_account(slug="shop", plan="basic")
        run_billing(as_of=opened)
    subscription = Subscription.objects.get(account=account)
    spike_day = (now - timedelta(days=1)).astimezone(UTC).date()
    for k in range(1, 9):
        day = spike_day - timedelta(weeks=k)
        moment = datetime.combine(day, time(12), tzinfo=UTC)
        start, _ = periods.usage_period_containing(
            subscription.billing_anchor, moment, subscription.interval
        )
        UsageDay.objects.create(
            account=account,
            period_start=start,
            meter="helpdesk_tickets",
            day=day,
            status="final",
            units=USUAL,
        )
    wave_at = datetime.combine(spike_day, time(8), tzinfo=UTC)
    events = []
    for i in range(SPIKE):
        events += ticket_events(
            f"W{i:03}", wave_at + timedelta(seconds=30 * i), requester=f"s{i}@x.example"
        )
    ingest(account, events, now=now)
    spike_guard.spike_guard_tick(as_of=now)
    anomaly = UsageAnomaly.objects.get(account=account)
    assert (anomaly.status, anomaly.held) == ("open", SPIKE - USUAL)
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def test_a_merchant_reviews_a_spike_from_the_banner_and_releases_it(shop, live_server, page):
    anomaly = UsageAnomaly.objects.get(account=shop)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@shop.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Billing & Usage").click()
    banner = page.locator(".held-banner")
    day = anomaly.day
    assert banner.inner_text() == (
        f"412 helpdesk tickets on {day:%a %-d %b}, against a usual 40 on {day:%A}s: 372 are "
        "held for review, not billed. Review them"
    )
    banner.get_by_role("link", name="Review them").click()
    card = page.locator("#held")
    row = card.locator(f"#anomaly-{anomaly.pk}")
    assert "372" in row.inner_text() and "released automatically on" in row.inner_text()
    held_line = page.locator("#meter-helpdesk_tickets").inner_text().lower()  # dt: capitals
    assert "held for review\n372 — not billed, not in the forecast" in held_line
    if SHOTS:
        folder = ROOT / SHOTS
        folder.mkdir(parents=True, exist_ok=True)
        # Bounding boxes are the viewport's (the link scrolled to the card); the clip is the
        # page's.
        scrolled = page.evaluate("window.scrollY")
        top = page.locator(".page-head").bounding_box()
        bottom = card.bounding_box()
        assert top is not None and bottom is not None
        top["y"] += scrolled
        bottom["y"] += scrolled
        page.screenshot(
            path=str(folder / "anomaly-banner.png"),
            full_page=True,
            clip={
                "x": 0,
                "y": top["y"],
                "width": 1280,
                "height": bottom["y"] + bottom["height"] - top["y"] + 16,
            },
        )

    row.get_by_role("button", name="Release").click()
    page.get_by_text("Released: 372 helpdesk tickets billed").wait_for()
    decided = page.locator("#held .held-decided")
    assert "Released: billed" in decided.inner_text()
    assert "by owner@shop.example" in decided.inner_text()
    assert page.locator(".held-banner").count() == 0
    assert page.locator(f"#anomaly-{anomaly.pk}").count() == 0
    anomaly.refresh_from_db()
    assert anomaly.status == "released"
    waves = Charge.objects.filter(account=shop, meter="helpdesk_tickets", subject__startswith="W")
    assert set(waves.values_list("status", flat=True)) <= {"final", "pending"}
