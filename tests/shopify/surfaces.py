"""A Shopify-channel account as the surfaces see it (pages, console, API, PDF): the shop, its
active app subscription with Shopify's figures mirrored, and a closed period whose overage was
split by the cap. The rows are written as the lifecycle and the usage path leave them (those
paths have their own tests: test_lifecycle.py, test_usage_records.py); here only what each
user reads is checked. Times are fixed, never today's date.

The figures are docs/shopify.md's worked example: cap $10,000.00 (1,000,000 cents), balance
used 950,000, an overage line of 80,000 (2,300 tickets on Basic: 2,000 over, 20 blocks of 100
at $40.00) → 50,000 posted, 30,000 held."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts import services as account_services
from accounts.models import BillingChannel
from billing.models import (
    Invoice,
    InvoiceLine,
    ShopifyStatus,
    ShopifySubscription,
    ShopifyUsageRecord,
    UsageRecordStatus,
)
from billing.run import run_billing
from plans import services as plan_services
from plans.models import Subscription
from tests.billing.charges import counted

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # Shopify activated the app subscription here
CLOSE = T0 + timedelta(days=30)  # the first 30-day period ends: its usage is invoiced
LATER = CLOSE + timedelta(days=2)
CAP = 1_000_000
POSTED = 50_000
HELD = 30_000
RECORD_GID = "gid://shopify/AppUsageRecord/4021"


def make_shopify(make_account, standin, *, slug: str = "shop") -> tuple:
    """A Basic account that pays through its shop, ACTIVE at Shopify since T0, with our 30-day
    subscription anchored there (as the approval leaves it) and its first statement issued.
    The shop exists on the stand-in (`standin`: the shopify_standin fixture), so the calls the
    close makes get Shopify's answers on loopback. `make_account` brings the catalog."""
    standin.shop(f"{slug}.myshopify.com", "shpat_surfaces", currency="USD")
    with time_machine.travel(T0, tick=False):
        account = plan_services.account_open(
            slug=slug,
            name=slug.title(),
            billing_email=f"billing@{slug}.example",
            currency="USD",
            plan_code="basic",
            interval="30d",
            addons=[],
            billing_channel=BillingChannel.SHOPIFY,
            shop_domain=f"{slug}.myshopify.com",
            access_token="shpat_surfaces",
            # The conftest's partner (get or create by name): its API key reaches the account.
            partner=account_services.partner_get_or_create(name="Acme Partners"),
        )
        plan_services.subscription_create(
            account=account,
            offer=plan_services.resolve_offer(code="basic"),
            interval="30d",
            now=T0,
            reason="approved at Shopify",
        )
        run_billing(as_of=T0)
    subscription = Subscription.objects.get(account=account)
    app = ShopifySubscription.objects.create(
        account=account,
        subscription=subscription,
        gid=f"gid://shopify/AppSubscription/{1000 + account.pk}",
        name="Basic plan",
        status=ShopifyStatus.ACTIVE,
        currency="USD",
        recurring_line_gid="gid://shopify/AppSubscriptionLineItem/21?v=1&index=0",
        recurring_amount_minor=6000,
        usage_line_gid="gid://shopify/AppSubscriptionLineItem/22?v=1&index=1",
        usage_terms="Billable tickets over 300 per 30 days: $40.00 per 100",
        capped_amount_minor=CAP,
        balance_used_minor=950_000,
        current_period_end=CLOSE,
        created_at=T0,
        activated_at=T0,
        updated_at=T0,
    )
    return account, app


def close_over_the_cap(account, app) -> Invoice:
    """The first period closes with 2,300 tickets: its $800.00 overage line is split by the
    cap, $500.00 posted and $300.00 held (what the usage path leaves)."""
    counted(account, "helpdesk_tickets", 2300, T0 + timedelta(days=3))
    with time_machine.travel(CLOSE + timedelta(minutes=5), tick=False):
        run_billing(as_of=CLOSE + timedelta(minutes=5))
    invoice = Invoice.objects.get(account=account, reason="period_close")
    line = InvoiceLine.objects.get(invoice=invoice, kind="overage")
    assert line.amount_minor == POSTED + HELD
    for part, amount, status, gid in (
        (1, POSTED, UsageRecordStatus.POSTED, RECORD_GID),
        (2, HELD, UsageRecordStatus.HELD, ""),
    ):
        # The close may have started posting (with no Shopify to answer here): the rows end
        # as a post within the cap leaves them.
        ShopifyUsageRecord.objects.update_or_create(
            line=line,
            part=part,
            defaults=dict(
                invoice=invoice,
                shopify_subscription=app,
                idempotency_key=f"usage:{invoice.number}:line:{line.pk}:part:{part}",
                amount_minor=amount,
                currency="USD",
                description=line.description[:255],
                status=status,
                shopify_gid=gid,
                created_at=CLOSE,
                posted_at=CLOSE if gid else None,
            ),
        )
    # Shopify's new interval: the posted part counts in it (decision 3).
    app.current_period_end = CLOSE + timedelta(days=30)
    app.balance_used_minor = POSTED
    app.save()
    return invoice


@pytest.fixture
def shopify_account(make_account, shopify_standin):
    return make_shopify(make_account, shopify_standin)
