"""A merchant who pays through Shopify, in a real browser over the live server and the Shopify
stand-in (its approval pages are what a merchant clicks; its webhooks come to the live server):
approve the app subscription, see it active, then usage over the approved cap after a period
closes is held (P8), the merchant approves a higher cap in Shopify and the held part is posted.

With SCREENSHOTS=<folder> set, the states are saved at 1280 and 390 px wide (shopify-*.png:
`SCREENSHOTS=docs/screenshots pytest tests/browser/test_shopify_channel.py`). Dates come from
the clock at the start of the test, never a fixed "today".
"""

import re
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Membership, ShopifyShop
from billing import shopify_billing
from billing.models import Invoice, ShopifyStatus, ShopifySubscription, ShopifyUsageRecord
from billing.run import run_billing
from plans import services as plan_services
from plans.models import Subscription
from tests.billing.charges import counted
from tests.browser.test_billing_page import shoot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOMAIN = "bloom.myshopify.com"
CAP_MINOR = 10_000  # $100.00 per 30 days: 500 tickets over Basic's allowance go past it


@pytest.fixture
def merchant(shopify_standin, live_server, settings, catalog, django_user_model):
    """A Shopify-channel account on Basic whose app subscription waits for approval; the
    stand-in's webhooks go to the live server and Shopify sends the merchant back there."""
    settings.SITE_URL = live_server.url
    shopify_standin.configure(
        webhook_url=f"{live_server.url}/webhooks/shopify/", api_secret=shopify_standin.api_secret
    )
    shopify_standin.shop(DOMAIN, "shpat_browser_0123456789", "USD")
    account = plan_services.account_open(
        slug="bloom",
        name="Bloom Store",
        billing_email="billing@bloom.example",
        currency="USD",
        plan_code="basic",
        interval="30d",
        addons=[],
        billing_channel="shopify",
        shop_domain=DOMAIN,
        access_token="shpat_browser_0123456789",
    )
    ShopifyShop.objects.filter(account=account).update(capped_amount_minor=CAP_MINOR)
    shopify_billing.shopify_subscribe(account=account, plan_code="basic")
    user = django_user_model.objects.create_user("owner@bloom.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def log_in(page, live_server):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email or username").fill("owner@bloom.example")
    page.get_by_label("Password").fill("pw-owner-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Billing & Usage").click()
    page.get_by_role("heading", name="Paid through Shopify").wait_for()


def panel_text(page) -> str:
    return " ".join(page.locator("#shopify").inner_text().split())


def reload_until(page, words: str, *, gone: bool = False, seconds: float = 20) -> None:
    """Shopify's webhooks arrive on their own thread: reload until the page says (or stops
    saying) `words`."""
    deadline = time.monotonic() + seconds
    while True:
        present = words in page.content()
        if present != gone:
            return
        assert time.monotonic() < deadline, f"{words!r} {'still' if gone else 'never'} shown"
        time.sleep(0.3)
        page.reload()


def test_approve_in_shopify_then_a_cap_raise_posts_the_held_usage(
    merchant, shopify_standin, live_server, page
):
    log_in(page, live_server)
    panel = page.locator("#shopify")
    panel.get_by_text("Waiting for your approval in Shopify").wait_for()
    assert page.get_by_text("Add a card").count() == 0
    shoot(page, "shopify-pending")

    # Shopify's approval page (the stand-in's), as the merchant sees it.
    panel.get_by_role("link", name="Approve the subscription in Shopify").click()
    page.get_by_role("button", name="Approve").wait_for()
    assert "Basic plan" in page.content() and "USD 100.00 per 30 days" in page.content()
    shoot(page, "shopify-approval")
    page.get_by_role("button", name="Approve").click()

    # Back on our page: Shopify said ACTIVE (its webhook or the return page's question).
    page.get_by_text("Shopify approved your subscription: it is active.").wait_for()
    reload_until(page, "Approved usage cap")
    text = panel_text(page)
    assert "Active" in text and "$100.00 per 30 days" in text
    assert "$0.00 of $100.00" in text
    row = ShopifySubscription.objects.get(account=merchant)
    subscription = Subscription.objects.get(account=merchant, ended_at__isnull=True)
    assert row.status == ShopifyStatus.ACTIVE and subscription.interval == "30d"
    assert subscription.current_period_end == row.current_period_end
    shoot(page, "shopify-active")

    # 800 tickets in the first 30 days: 500 over Basic's 300, 5 blocks of $40.00 = $200.00.
    counted(merchant, "helpdesk_tickets", 800, timezone.now() + timedelta(days=1))
    end = subscription.current_period_end
    # Shopify's next interval has begun (its balance starts again at $0.00) and our close runs;
    # the portal's clock moves there too and stays (a fresh login: sessions expire on it).
    after = end + timedelta(minutes=5)
    shopify_standin.clock(now=after)
    with time_machine.travel(after, tick=True):
        run_billing(as_of=after)
        statement = Invoice.objects.get(account=merchant, reason="period_close")
        parts = ShopifyUsageRecord.objects.filter(invoice=statement).order_by("part")
        assert [(p.amount_minor, p.status) for p in parts] == [
            (10_000, "posted"),
            (10_000, "held"),
        ]
        log_in(page, live_server)
        held_over_the_cap(page, statement, shopify_standin, live_server)


def held_over_the_cap(page, statement, shopify_standin, live_server) -> None:
    """P8 on this channel: the part over the cap is held, shown, and posted after a raise."""
    held = page.locator("#shopify .banner.warn[role=alert]")
    held.get_by_text("$100.00 held over your approved cap.").wait_for()
    assert "$100.00 of $100.00" in panel_text(page)
    shoot(page, "shopify-held")
    page.get_by_role("navigation", name="Billing sections").get_by_role(
        "link", name="Invoices"
    ).click()
    records = page.locator(f"#invoice-{statement.pk} .usage-records")
    records.get_by_text("Held over your approved cap").wait_for()
    assert re.search(
        r"\$100\.00 · Posted to Shopify \(Shopify usage record \d+\)", records.inner_text()
    )
    shoot(page, "shopify-usage-statement")

    # The merchant approves a higher cap on Shopify's page; the held part is posted.
    page.goto(f"{live_server.url}/billing/bloom/")
    held.get_by_role("link", name="Approve a higher cap in Shopify").click()
    page.get_by_role("button", name="Approve").click()
    page.get_by_role("heading", name="Paid through Shopify").wait_for()
    reload_until(page, "held over your approved cap", gone=True)
    # The raise lifts the hold at once; the held part is posted by the sweep just after it.
    deadline = time.monotonic() + 20
    while "$200.00 of $1,000.00" not in panel_text(page):
        assert time.monotonic() < deadline, panel_text(page)
        time.sleep(0.3)
        page.reload()
    text = panel_text(page)
    assert "$1,000.00 per 30 days" in text and "$200.00 of $1,000.00" in text
    assert sorted(p.status for p in ShopifyUsageRecord.objects.filter(invoice=statement)) == [
        "posted",
        "posted",
    ]
    statement.refresh_from_db()
    assert statement.status == "paid"
    at_shopify = shopify_standin.state()["usage_records"]
    assert sorted(r["price"] for r in at_shopify) == ["100.00", "100.00"]
    shoot(page, "shopify-cap-raised")
