"""F6 across an end: late tickets of a subscription that ended (canceled at its cycle's end) are
billed on the first period-close invoice after the merchant starts again, as late usage on
their own period's terms, once; the ended subscription's periods stay readable in the usage API
and on the Usage tab. Times are fixed instants, never today's date."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing import changes, restart
from billing.models import Invoice, UsageClose
from billing.run import run_billing
from plans.models import Subscription
from tests.billing.charges import counted
from tests.billing.pages_fixtures import T0, account  # noqa: F401
from tests.billing.test_cancel_at_period_end import END, MID, billing_at
from tests.billing.test_money_safety import in_threads
from tests.billing.test_run_billing import ingest_many, tickets

NOV_20 = T0 + timedelta(days=19)  # the late tickets' November day
LATE_ON = END + timedelta(days=1, hours=10)  # Dec 2: they reach us after the end
BACK = END + timedelta(days=3, hours=9)  # Dec 4, 09:00: the merchant starts again
FIRST_CLOSE = datetime(2027, 1, 4, 9, tzinfo=UTC)  # the new subscription's first close
SECOND_CLOSE = datetime(2027, 2, 4, 9, tzinfo=UTC)
PRO_MONTH = 36000
BASIC_BLOCK = 4000  # Basic: 300 included, then $40 per block of 100 (P2)


def at(moment):
    return time_machine.travel(moment, tick=False)


def end_with_late_tickets(shop) -> None:
    """Basic in November with 350 tickets (one block over, 4,000 on the Dec 1 close); canceled
    mid-cycle, so the subscription ends at that close; then 60 November tickets arrive late,
    after the end: 410, two blocks, one more than billed."""
    counted(shop, "helpdesk_tickets", 350, T0 + timedelta(days=10))
    with at(MID):
        changes.subscription_cancel_at_period_end(account=shop)
    billing_at(END)
    [last] = Invoice.objects.filter(account=shop, reason="period_close")
    assert last.total_minor == BASIC_BLOCK
    assert Subscription.objects.get(account=shop).ended_at == END
    with at(LATE_ON):
        ingest_many(shop, tickets(60, NOV_20), now=LATE_ON)


def late_lines(invoice):
    return [line for line in invoice.lines.all() if line.kind == "late_usage"]


def test_F6_late_tickets_of_the_ended_subscription_go_on_the_first_close_after_start_again(
    account,  # noqa: F811
):
    end_with_late_tickets(account)
    # Ended, not started again: nothing closes, nothing is billed.
    assert billing_at(LATE_ON + timedelta(hours=1)).invoices == []
    with at(BACK):
        started = restart.subscription_restart(account=account, plan_code="pro", interval="month")
    # The start invoice is the new cycle's fee alone (P1): the late units wait for the close.
    assert started.invoice.total_minor == PRO_MONTH and not late_lines(started.invoice)
    new = started.subscription

    billing_at(FIRST_CLOSE)
    [close] = Invoice.objects.filter(subscription=new, reason="period_close")
    [late] = late_lines(close)
    # Priced on November's terms (Basic: 410 is two blocks, 4,000 of them billed), not on Pro's
    # 2,000 included, which would make it 0.
    assert late.amount_minor == BASIC_BLOCK
    assert (late.period_start, late.period_end) == (T0, END)
    assert "F6" in late.rules and "November 2026" in late.description
    assert close.total_minor == PRO_MONTH + BASIC_BLOCK  # the next cycle's fee + late usage
    assert "late usage" in close.note.lower()
    old = UsageClose.objects.get(subscription__account=account, period_start=T0)
    assert old.billed_units["helpdesk_tickets"] == 410

    # Run again, and close the next period: nothing more is billed for November.
    assert billing_at(FIRST_CLOSE).invoices == []
    billing_at(SECOND_CLOSE)
    [_, following] = Invoice.objects.filter(subscription=new, reason="period_close").order_by(
        "period_start"
    )
    assert not late_lines(following) and following.total_minor == PRO_MONTH


def test_F6_the_open_period_of_the_new_subscription_announces_the_late_units(
    account,  # noqa: F811
    partner_api,
):
    end_with_late_tickets(account)
    with at(BACK):
        restart.subscription_restart(account=account, plan_code="pro", interval="month")
        body = partner_api.get("/api/v1/accounts/shop/usage").json()
    assert body["period"]["start"] == "2026-12-04T09:00:00Z"
    assert body["meters"]["helpdesk_tickets"]["late"] == 60


@pytest.mark.django_db(transaction=True)
def test_F6_two_concurrent_closes_bill_the_ended_subscriptions_late_units_once(make_account):
    with at(T0):
        shop = make_account(slug="shop", plan="basic")
        run_billing(as_of=T0)
    end_with_late_tickets(shop)
    with at(BACK):
        new = restart.subscription_restart(account=shop, plan_code="pro", interval="month")
    with at(FIRST_CLOSE):
        results = in_threads(4, lambda i: run_billing(as_of=FIRST_CLOSE))
    assert not [r for r in results if isinstance(r, Exception)], results
    [close] = Invoice.objects.filter(subscription=new.subscription, reason="period_close")
    assert [line.amount_minor for line in late_lines(close)] == [BASIC_BLOCK]
    assert Invoice.objects.filter(account=shop, lines__kind="late_usage").count() == 1


# --- past periods stay readable after the end -----------------------------------------------


def test_F6_the_usage_api_answers_the_ended_subscriptions_periods(
    account,  # noqa: F811
    partner_api,
):
    end_with_late_tickets(account)
    url = "/api/v1/accounts/shop/usage"
    with at(LATE_ON + timedelta(hours=2)):
        november = partner_api.get(url, {"period": "2026-11"})
        latest = partner_api.get(url)  # no live subscription: its last period
    assert november.status_code == 200, november.json()
    assert latest.json() == november.json()
    body = november.json()
    assert body["period"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    tickets_used = body["meters"]["helpdesk_tickets"]
    assert (tickets_used["used"], tickets_used["included"], tickets_used["late"]) == (410, 300, 0)
    assert tickets_used["forecast"]["method"] == "final"
    # Started again on Dec 4: November keeps the ended subscription's own period (its anchor
    # is the 1st, the new one's the 4th).
    with at(BACK):
        restart.subscription_restart(account=account, plan_code="pro", interval="month")
        again = partner_api.get(url, {"period": "2026-11"}).json()
        december = partner_api.get(url, {"period": "2026-12"}).json()
    assert again["period"] == body["period"]
    assert again["meters"]["helpdesk_tickets"]["used"] == 410
    assert december["period"]["start"] == "2026-12-04T09:00:00Z"


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def test_F6_the_usage_tab_shows_past_periods_after_the_end(account, logged_in):  # noqa: F811
    end_with_late_tickets(account)
    with at(LATE_ON + timedelta(hours=2)):
        page = logged_in.get("/billing/shop/usage/")
        picked = logged_in.get("/billing/shop/usage/", {"period": "2026-11"})
        unknown = logged_in.get("/billing/shop/usage/", {"period": "1999-13"})
        hostile = logged_in.get("/billing/shop/usage/", {"period": "2026-11\x00"})
    assert page.status_code == picked.status_code == unknown.status_code == 200
    assert hostile.status_code == 400  # a NUL byte is refused at the edge, whatever the page
    text = page.content.decode()
    assert "No subscription: no usage to show" not in text
    assert "Your subscription has ended: service ran until <strong>Nov 30, 2026</strong>" in text
    assert "Usage period Nov 1 – Nov 30, 2026 · over." in text
    assert "<strong>410</strong> / 300 included" in text
    # The 60 late units wait for a start again (F6).
    assert "60 from closed periods, billed on the next invoice after you start again" in text
    assert "<strong>410</strong> / 300 included" in picked.content.decode()


def test_F6_the_usage_tab_picks_a_period_of_the_ended_subscription_after_start_again(
    account,  # noqa: F811
    logged_in,
):
    end_with_late_tickets(account)
    with at(BACK):
        restart.subscription_restart(account=account, plan_code="pro", interval="month")
    with at(BACK + timedelta(days=2)):
        current = logged_in.get("/billing/shop/usage/").content.decode()
        november = logged_in.get("/billing/shop/usage/", {"period": "2026-11"}).content.decode()
    assert "Usage period Dec 4, 2026 – Jan 4, 2027 · day 3 of 32." in current
    assert '<option value="2026-12" selected>Dec 4, 2026 – Jan 4, 2027</option>' in current
    assert '<option value="2026-11">Nov 1 – Nov 30, 2026</option>' in current
    assert "60 from closed periods, billed on the next invoice</dd>" in current
    assert "Usage period Nov 1 – Nov 30, 2026 · over." in november
    assert "<strong>410</strong> / 300 included" in november
    assert "your earlier subscription, which ran until <strong>Nov 30, 2026</strong>" in november
