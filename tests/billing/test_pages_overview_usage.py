"""Overview and Usage pages: what a merchant reads, amounts as shown, dates fixed by time travel."""

from datetime import timedelta

import pytest

from billing.invoicing import invoice_transition
from billing.models import Dunning, Invoice
from billing.pages import charts
from metering.models import Entitlement
from plans.models import Subscription
from plans.services import subscription_transition
from tests.billing.pages_fixtures import HALF, T0, account, at  # noqa: F401
from tests.billing.test_run_billing import tickets
from tests.metering.helpers import ingest


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def get(client, path, moment=HALF):
    with at(moment):
        response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_overview_shows_plan_cycle_renewal_and_amount_due(logged_in):
    page = get(logged_in, "/billing/shop/")
    assert "Basic" in page and "Billed monthly: <strong>$60.00</strong> per month" in page
    assert "Nov 1 – Nov 30, 2026" in page  # the last day covered, not Dec 1
    assert "15 days left" in page
    assert "Renews: the next cycle runs from <strong>Dec 1, 2026</strong>: $60.00 in fees" in page
    assert "$60.00" in page and "2026-000001" in page  # the open first invoice is due
    assert "Add a card to pay" in page  # no card: nothing to charge with


def test_overview_banner_says_what_is_off_when_past_due_then_suspended(logged_in, account):  # noqa: F811
    invoice = Invoice.objects.get(account=account)
    subscription = Subscription.objects.get(account=account)
    invoice_transition(invoice=invoice, to="past_due", reason="declined", at=T0)
    subscription_transition(subscription_id=subscription.pk, to="past_due", reason="x", at=T0)
    Dunning.objects.create(invoice=invoice, suspend_at=T0 + timedelta(days=14))
    page = get(logged_in, "/billing/shop/", T0 + timedelta(days=2))
    assert "A payment failed." in page and "Nothing is switched off yet" in page
    assert "Unpaid by Nov 15, 2026, the helpdesk is suspended." in page
    subscription_transition(subscription_id=subscription.pk, to="suspended", reason="x", at=T0)
    page = get(logged_in, "/billing/shop/usage/")
    assert "Your helpdesk is suspended." in page and "switched off" in page


def test_overview_shows_an_invoice_held_by_the_spending_cap(logged_in, account):  # noqa: F811
    invoice = Invoice.objects.get(account=account)
    Dunning.objects.create(invoice=invoice, held_reason="over the approved spending cap (P8)")
    page = get(logged_in, "/billing/shop/")
    assert "is <strong>held, not charged</strong>: over the approved spending cap (P8)" in page


def test_usage_shows_used_included_overage_forecast_and_a_daily_chart(logged_in, account):  # noqa: F811
    # 320 billable tickets on Nov 3: 20 over Basic's 300, one block of 100 → $40.00 (P2).
    ingest(account, tickets(320, T0 + timedelta(days=2)), now=HALF)
    page = get(logged_in, "/billing/shop/usage/")
    assert "Usage period Nov 1 – Nov 30, 2026" in page
    assert "<strong>320</strong> / 300 included" in page
    assert "20 over · <strong>$40.00</strong>" in page
    # 320 in 15 of 30 days → about 640 by the end: 340 over, 4 blocks → $160.00.
    assert "about 640 by Nov 30" in page and "<strong>$160.00</strong> overage" in page
    assert "at this period&#x27;s pace so far" in page or "at this period's pace so far" in page
    assert '<figure class="chart">' in page and "Nov 3: +320, 320 so far" in page
    assert 'class="bar over"><title>Nov 3: +320, 320 so far</title></rect>' in page  # over 300


def test_usage_shows_pending_units_apart(logged_in, account):  # noqa: F811
    from metering.models import Charge

    ingest(account, tickets(3, T0 + timedelta(days=14)), now=HALF)
    Charge.objects.filter(account=account).update(
        status="pending", pending_until=HALF + timedelta(hours=10)
    )
    page = get(logged_in, "/billing/shop/usage/")
    assert "<strong>0</strong> / 300 included" in page
    assert '3 <span class="muted">waiting for their 72-hour window; not counted yet' in page


def test_usage_says_convert_is_paused_and_until_when(logged_in, account):  # noqa: F811
    from plans.models import AddOnTier, SubscriptionAddOn

    subscription = Subscription.objects.get(account=account)
    tier = AddOnTier.objects.get(code="convert-50")
    SubscriptionAddOn.objects.create(
        subscription=subscription, addon=tier.addon, tier=tier, started_at=T0
    )
    Entitlement.objects.create(
        account=account, feature="convert_campaigns", state="paused", until=T0 + timedelta(days=30)
    )
    page = get(logged_in, "/billing/shop/usage/")
    assert "Campaigns are paused until Dec 1, 2026" in page


def test_why_was_this_billed_explains_a_ticket_with_rules_in_words(logged_in, account):  # noqa: F811
    ingest(account, tickets(1, T0 + timedelta(days=2)), now=HALF)
    ticket = f"{T0 + timedelta(days=2):%m%d}-0"
    with at():
        fragment = logged_in.get(
            f"/billing/shop/usage/why/?ticket={ticket}", HTTP_HX_REQUEST="true"
        ).content.decode()
    assert "<html" not in fragment  # htmx gets the fragment only
    assert "Helpdesk tickets:" in fragment and "counted" in fragment
    assert '<span class="rule">H1</span> An agent or a rule sent a public reply' in fragment
    assert "Nov 3, 2026 00:00 UTC" in fragment
    page = get(logged_in, f"/billing/shop/usage/why/?ticket={ticket}")  # without JavaScript
    assert "<html" in page and "H1" in page
    unknown = get(logged_in, "/billing/shop/usage/why/?ticket=nope")
    assert "No billing verdict for ticket “nope” yet" in unknown


def test_other_accounts_tickets_are_not_explained(logged_in, account, make_account):  # noqa: F811
    with at(T0):  # subscribed before its events
        other = make_account(slug="other")
    ingest(other, tickets(1, T0 + timedelta(days=2)), now=HALF)
    ticket = f"{T0 + timedelta(days=2):%m%d}-0"
    page = get(logged_in, f"/billing/shop/usage/why/?ticket={ticket}")
    assert "No billing verdict" in page


def test_the_chart_geometry_is_cumulative_with_a_forecast_line():
    days = charts.period_days(T0.date(), (T0 + timedelta(days=9)).date())
    chart = charts.cumulative_chart(
        days=days,
        counts={days[0]: 10, days[2]: 5},
        today=days[4],
        included=50,
        forecast=30,
    )
    assert [bar.total for bar in chart.bars] == [10, 10, 15, 15, 15]
    assert chart.y_max == 50 and chart.allowance_y is not None
    assert chart.forecast is not None and chart.forecast[3] < chart.forecast[1]  # rising
