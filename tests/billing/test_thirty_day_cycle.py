"""A subscription billed every 30 days (`30d`, the Shopify channel's interval) on PostgreSQL
with time travel: its cycles and usage periods are 30 days from the anchor, it pays the
catalog's monthly prices per period, and late usage lands in its own 30-day period.

Anchored on Jan 30, 2027, 10:00 UTC: the cycles end on Mar 1, Mar 31 and Apr 30, where a
monthly cycle from the same anchor would end on Feb 28, Mar 30 and Apr 30. Times are fixed
instants, never today's date."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.errors import DomainError
from billing import changes
from billing.models import Invoice
from billing.run import run_billing
from metering.models import Charge
from plans import periods
from plans import services as plan_services
from plans.models import Subscription
from tests.billing.test_run_billing import ingest_many, tickets

T0 = datetime(2027, 1, 30, 10, tzinfo=UTC)
MAR_1 = datetime(2027, 3, 1, 10, tzinfo=UTC)  # the first cycle's end: 30 days, not Feb 28
MAR_31 = datetime(2027, 3, 31, 10, tzinfo=UTC)
APR_30 = datetime(2027, 4, 30, 10, tzinfo=UTC)
MAY_30 = datetime(2027, 5, 30, 10, tzinfo=UTC)
# Basic (catalog): 6,000 a month, 300 tickets included, then 4,000 per block of 100 (P2).
BASIC_MONTH = 6000
BASIC_BLOCK = 4000
PRO_MONTH = 36000


def at(moment):
    return time_machine.travel(moment, tick=False)


@pytest.fixture
def shop(make_account):
    """A Basic subscription billed every 30 days, opened (not migrated) at T0, its first
    invoice issued."""
    with at(T0):
        # 30 days is the Shopify channel's cycle: the account pays through its shop, and its
        # subscription starts as Shopify's approval starts it (no Shopify call is made here).
        account = make_account(
            slug="shop",
            plan="basic",
            interval="month",
            billing_channel="shopify",
            shop_domain="shop.myshopify.com",
            access_token="shpat_thirty_days",
        )
        plan_services.subscription_create(
            account=account,
            offer=plan_services.resolve_offer(code="basic"),
            interval=periods.DAYS_30,
            now=T0,
        )
    run_billing(as_of=T0)
    return account


def closes(account):
    return list(
        Invoice.objects.filter(account=account, reason="period_close").order_by("period_start")
    )


def amounts(invoice, kind):
    return [line.amount_minor for line in invoice.lines.all() if line.kind == kind]


def test_the_first_invoice_pays_the_monthly_fee_for_30_days(shop):
    [first] = Invoice.objects.filter(account=shop)
    assert first.reason == "subscription_start"
    assert (first.period_start, first.period_end) == (T0, MAR_1)
    assert first.total_minor == BASIC_MONTH
    subscription = Subscription.objects.get(account=shop)
    assert subscription.interval == "30d"
    assert (subscription.current_period_start, subscription.current_period_end) == (T0, MAR_1)
    assert (subscription.usage_period_start, subscription.usage_period_end) == (T0, MAR_1)


def test_it_closes_every_30_days_at_the_monthly_price(shop):
    for day in range(0, 100, 3):
        run_billing(as_of=T0 + timedelta(days=day))
    run_billing(as_of=APR_30)
    assert [(i.period_start, i.period_end) for i in closes(shop)] == [
        (T0, MAR_1),
        (MAR_1, MAR_31),
        (MAR_31, APR_30),
    ]
    # Each close bills the next period's fee in advance: the monthly one, never an annual one.
    assert [amounts(i, "plan_fee") for i in closes(shop)] == [[BASIC_MONTH]] * 3
    assert [i.total_minor for i in closes(shop)] == [BASIC_MONTH] * 3
    # What the merchant reads: the 30 days the invoice covers.
    assert periods.format_period(T0, MAR_1) == "Jan 30 \u2013 Mar 1, 2027"
    subscription = Subscription.objects.get(account=shop)
    assert (subscription.current_period_start, subscription.current_period_end) == (APR_30, MAY_30)
    assert (subscription.usage_period_start, subscription.usage_period_end) == (APR_30, MAY_30)


def test_the_allowance_is_per_30_day_period_and_overage_is_priced_monthly(shop):
    """250 tickets on Feb 5 and 250 on Feb 28: one 30-day period holds all 500 (a monthly
    cycle from the same anchor would split them 250 + 250 and bill no overage)."""
    feb_5, feb_28 = T0 + timedelta(days=6), datetime(2027, 2, 28, 12, tzinfo=UTC)
    with at(feb_5 + timedelta(days=1)):
        ingest_many(shop, tickets(250, feb_5), now=feb_5 + timedelta(days=1))
    with at(MAR_1 - timedelta(hours=1)):
        ingest_many(shop, tickets(250, feb_28), now=MAR_1 - timedelta(hours=1))
    assert set(Charge.objects.filter(account=shop).values_list("period_start", flat=True)) == {T0}
    run_billing(as_of=MAR_1)
    [close] = closes(shop)
    assert (close.period_start, close.period_end) == (T0, MAR_1)
    assert amounts(close, "overage") == [2 * BASIC_BLOCK]  # 500 - 300 included: 2 blocks
    assert amounts(close, "plan_fee") == [BASIC_MONTH]
    assert close.total_minor == 2 * BASIC_BLOCK + BASIC_MONTH


def test_late_usage_lands_in_its_own_30_day_period(shop):
    """350 tickets billed at the Mar 1 close (one block); 60 more stamped Feb 28, which is in
    the first 30-day period, reach us after that close: the Mar 31 close bills one more
    block as late usage, and the second period has no overage of its own."""
    feb_5, feb_28 = T0 + timedelta(days=6), datetime(2027, 2, 28, 12, tzinfo=UTC)
    with at(feb_5 + timedelta(days=1)):
        ingest_many(shop, tickets(350, feb_5), now=feb_5 + timedelta(days=1))
    run_billing(as_of=MAR_1)
    [first] = closes(shop)
    assert amounts(first, "overage") == [BASIC_BLOCK]
    late_on = MAR_1 + timedelta(days=2)
    with at(late_on):
        ingest_many(shop, tickets(60, feb_28), now=late_on)
    late_starts = Charge.objects.filter(account=shop, billable_at__gte=feb_28)
    assert set(late_starts.values_list("period_start", flat=True)) == {T0}
    run_billing(as_of=MAR_31)
    _, second = closes(shop)
    assert (second.period_start, second.period_end) == (MAR_1, MAR_31)
    assert amounts(second, "late_usage") == [BASIC_BLOCK]  # 410 in Jan 30 - Mar 1: 2 blocks
    assert amounts(second, "overage") == []
    assert second.total_minor == BASIC_BLOCK + BASIC_MONTH


def test_an_upgrade_is_prorated_over_the_30_day_cycle(shop):
    """Half-way through the 30 days (15 days in), Basic -> Pro charges half the monthly
    difference. A monthly cycle from Jan 30 (29 days to Feb 28) would charge another share."""
    half_way = T0 + timedelta(days=15)
    with at(half_way):
        result = changes.subscription_change(
            account=shop, request=changes.ChangeRequest(plan="pro"), at=half_way
        )
    assert result.effective == "now"
    assert result.invoice is not None
    assert result.invoice.total_minor == (PRO_MONTH - BASIC_MONTH) // 2
    assert (result.invoice.period_start, result.invoice.period_end) == (half_way, MAR_1)
    subscription = Subscription.objects.get(account=shop)
    assert subscription.interval == "30d"
    assert subscription.current_period_end == MAR_1


@pytest.mark.parametrize("interval", ["year", "month"])
def test_the_interval_of_a_30_day_subscription_does_not_change(shop, interval):
    with pytest.raises(DomainError, match="renews every 30 days"):
        changes.subscription_change(
            account=shop,
            request=changes.ChangeRequest(interval=interval),
            at=T0 + timedelta(days=3),
        )
    assert Subscription.objects.get(account=shop).interval == "30d"
