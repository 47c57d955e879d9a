"""Billing where time and change meet: each closed period is priced, then and later, on the
terms it had (F6, P4, Z8/Z9), changes never reshape history (P6), and limits follow upgrades
(C2). Every instant is fixed: nothing here depends on today's date."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing import changes
from billing.models import Invoice, UsageClose
from billing.run import run_billing
from metering import limits
from metering.models import Charge, Entitlement
from plans import periods
from plans.models import Subscription
from tests.billing.charges import counted
from tests.metering.helpers import ingest

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def opened(make_account):
    """Open an account at an instant (it pays its first fees) and issue its first invoice."""

    def open_at(at, **kwargs):
        with time_machine.travel(at, tick=False):
            account = make_account(**kwargs)
        run_billing(as_of=at)
        return account

    return open_at


def change(account, at, **request):
    addons = tuple(request.pop("addons", ()))
    return changes.subscription_change(
        account=account, request=changes.ChangeRequest(addons=addons, **request), at=at
    )


def close_of(account, period_start) -> Invoice:
    return Invoice.objects.get(account=account, reason="period_close", period_start=period_start)


def lines(invoice, *kinds):
    return [
        (line.kind, line.meter or None, line.quantity, line.amount_minor)
        for line in invoice.lines.all()
        if not kinds or line.kind in kinds
    ]


def tickets(n: int, at: datetime, prefix: str) -> list[dict]:
    events = []
    for i in range(n):
        when = at + timedelta(minutes=i)
        base = {"ticket": f"{prefix}-{i}", "channel": "email"}
        events += [
            base
            | {
                "id": f"{prefix}-{i}-c",
                "type": "message",
                "occurred_at": when,
                "author": "customer",
            },
            base
            | {
                "id": f"{prefix}-{i}-a",
                "type": "message",
                "occurred_at": when + timedelta(seconds=30),
                "author": "agent",
            },
        ]
    return events


# --- F6: late usage on the terms of the period it belongs to ----------------------------------


def test_F6_late_pro_tickets_stay_within_pro_after_a_downgrade_to_basic(opened):
    account = opened(OCT, slug="shop", plan="pro")
    counted(account, "helpdesk_tickets", 1000, OCT + timedelta(days=3))
    assert change(account, OCT + timedelta(days=20), plan="basic").effective == "period_end"
    run_billing(as_of=NOV)  # October closed on Pro, Basic from November
    assert Subscription.objects.get(account=account).plan.code == "basic"
    counted(
        account,
        "helpdesk_tickets",
        200,
        OCT + timedelta(days=4),
        recorded_at=NOV + timedelta(days=9),
    )
    run_billing(as_of=DEC)
    november = close_of(account, NOV)
    # 1,200 October tickets are within Pro's 2,000: nothing late to bill (on Basic: 9 blocks).
    assert lines(november, "late_usage", "credit") == []
    assert november.total_minor == 6000  # December's Basic fee only
    assert UsageClose.objects.get(period_start=OCT).billed_units["helpdesk_tickets"] == 1200


def test_F6_late_starter_tickets_are_billed_on_starter_after_an_upgrade_to_basic(opened):
    account = opened(OCT, slug="shop", plan="starter")  # 50 included, 40 cents per extra
    ingest(account, tickets(50, OCT + timedelta(days=2), "a"), now=OCT + timedelta(days=3))
    run_billing(as_of=NOV)
    assert change(account, NOV + timedelta(days=4), plan="basic").effective == "now"
    # 100 October tickets arrive late (the helpdesk's sync was down)
    ingest(account, tickets(100, OCT + timedelta(days=9), "b"), now=NOV + timedelta(days=9))
    run_billing(as_of=DEC)
    assert lines(close_of(account, NOV), "late_usage") == [
        ("late_usage", "helpdesk_tickets", 100, 4000)  # 100 × 40, not Basic's free 300
    ]


def test_F6_late_calls_of_a_month_with_voice_are_billed_after_voice_was_removed(opened):
    account = opened(OCT, slug="shop", plan="basic", addons=[("voice", "voice-20")])
    change(account, OCT + timedelta(days=20), addons=[("voice", None)])
    run_billing(as_of=NOV)  # Voice removed from November
    counted(
        account, "voice_tickets", 50, OCT + timedelta(days=5), recorded_at=NOV + timedelta(days=9)
    )
    run_billing(as_of=DEC)
    assert lines(close_of(account, NOV), "late_usage") == [
        ("late_usage", "voice_tickets", 30, 4500)  # 50 − 20 included, × 150
    ]


def test_F6_late_calls_from_before_voice_was_added_are_not_billed(opened):
    account = opened(OCT, slug="shop", plan="basic")
    run_billing(as_of=NOV)
    assert (
        change(account, NOV + timedelta(days=4), addons=[("voice", "voice-20")]).effective == "now"
    )
    counted(
        account, "voice_tickets", 50, OCT + timedelta(days=5), recorded_at=NOV + timedelta(days=9)
    )
    run_billing(as_of=DEC)
    november = close_of(account, NOV)
    assert lines(november, "late_usage", "credit") == []
    assert UsageClose.objects.get(period_start=OCT).billed_units["voice_tickets"] == 50


def test_F6_Z9_late_automated_resolutions_are_billed_on_their_months_allocation(opened):
    # Professional, 7 full agents, monthly: 70 resolutions a month, then 200 cents each.
    account = opened(OCT, slug="zen", plan="professional", full_agents=7)
    counted(account, "automated_resolutions", 70, OCT + timedelta(days=3))
    run_billing(as_of=NOV)
    assert lines(close_of(account, OCT), "overage") == []
    # Z2 verdicts come 72 h after a session: 10 October sessions are counted in November.
    counted(
        account,
        "automated_resolutions",
        10,
        OCT + timedelta(days=30),
        recorded_at=NOV + timedelta(days=2),
    )
    counted(account, "automated_resolutions", 5, NOV + timedelta(days=3))
    run_billing(as_of=DEC)
    november = close_of(account, NOV)
    assert lines(november, "late_usage") == [("late_usage", "automated_resolutions", 10, 2000)]
    assert lines(november, "overage") == []  # November's 5 are within November's 70
    assert UsageClose.objects.get(period_start=OCT).billed_units["automated_resolutions"] == 80


def test_F6_a_closed_period_keeps_the_terms_it_was_priced_on(opened):
    opened(OCT, slug="shop", plan="starter", addons=[("voice", "voice-20")])
    run_billing(as_of=NOV)
    kept = UsageClose.objects.get(period_start=OCT).terms
    assert kept["plan"]["code"] == "starter" and kept["plan"]["interval"] == "month"
    assert kept["plan"]["helpdesk"]["unit_price_minor"] == "40.0000"
    assert [(a["tier"], a["usage"]["included"]) for a in kept["addons"]] == [("voice-20", 20)]
    assert kept["cycle"] == [OCT.isoformat(), NOV.isoformat()]


# --- Z8, Z9: a monthly edition's allocation is per month -----------------------------------


def test_Z8_Z9_a_monthly_editions_allocation_is_per_month_not_per_year(opened):
    account = opened(NOV, slug="zen", plan="professional", full_agents=7)  # 70 a month
    counted(account, "automated_resolutions", 70, NOV + timedelta(days=3))
    run_billing(as_of=DEC)
    counted(account, "automated_resolutions", 70, DEC + timedelta(days=3))
    run_billing(as_of=JAN)
    december = close_of(account, DEC)
    assert lines(december, "overage", "late_usage") == []  # not 70 × 200 = 14,000
    assert december.total_minor == 7 * 11500  # January's edition fee only


def test_Z8_Z9_pause_on_a_monthly_edition_pauses_until_the_month_ends(opened):
    account = opened(NOV, slug="zen", plan="professional", full_agents=7)
    Subscription.objects.filter(account=account).update(ai_at_limit="pause")
    counted(account, "automated_resolutions", 70, NOV + timedelta(days=3))
    limits.apply_limits(
        touched={(account.pk, "automated_resolutions", NOV)}, as_of=NOV + timedelta(days=4)
    )
    ai = Entitlement.objects.get(account=account, feature="ai_agents")
    assert ai.state == "paused" and ai.until == DEC  # not next November
    run_billing(as_of=DEC)
    counted(account, "automated_resolutions", 10, DEC + timedelta(days=3))
    limits.apply_limits(
        touched={(account.pk, "automated_resolutions", DEC)}, as_of=DEC + timedelta(days=4)
    )
    statuses = Charge.objects.filter(period_start=DEC).values_list("status", flat=True)
    assert set(statuses) == {"final"}  # December's 10 are within December's 70
    assert Entitlement.objects.get(account=account, feature="ai_agents").state == "active"


# --- P6: month -> year never reshapes history -----------------------------------------------


def test_P6_month_to_year_keeps_every_closed_period_as_it_was(opened):
    account = opened(OCT, slug="shop", plan="basic")
    ingest(account, tickets(301, OCT + timedelta(days=5), "oct"), now=OCT + timedelta(days=6))
    run_billing(as_of=NOV)
    assert lines(close_of(account, OCT), "overage") == [("overage", "helpdesk_tickets", 1, 4000)]
    result = change(account, NOV + timedelta(days=15), interval="year")
    assert result.effective == "now"
    # A follow-up on an October ticket after the switch: the ticket stays in October.
    follow_up = {
        "id": "oct-0-late",
        "type": "message",
        "ticket": "oct-0",
        "channel": "email",
        "author": "customer",
        "occurred_at": NOV + timedelta(days=19),
    }
    ingest(account, [follow_up], now=NOV + timedelta(days=19))
    assert set(
        Charge.objects.filter(subject__startswith="oct-").values_list("period_start", flat=True)
    ) == {OCT}
    run_billing(as_of=DEC)
    run_billing(as_of=JAN)
    november, december = close_of(account, NOV), close_of(account, DEC)
    assert lines(november) == [] and lines(december) == []  # usage only, none over 300
    assert november.period_end == DEC and december.period_end == JAN
    assert UsageClose.objects.get(period_start=OCT).billed_units["helpdesk_tickets"] == 301
    subscription = Subscription.objects.get(account=account)
    assert subscription.billing_anchor == OCT
    assert (subscription.current_period_start, subscription.current_period_end) == (
        NOV,
        datetime(2027, 11, 1, tzinfo=UTC),
    )


# --- P4: each month on the tier it had ------------------------------------------------------


def test_P4_each_month_of_the_cycle_is_rated_on_the_voice_tier_it_had(opened):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    account = opened(
        start, slug="shop", plan="basic", interval="year", addons=[("voice", "voice-20")]
    )
    counted(account, "voice_tickets", 30, start + timedelta(days=10))  # 10 over Voice 20
    for month in range(1, 12):
        run_billing(as_of=periods.add_months(start, month))
    raised = change(account, datetime(2026, 12, 10, tzinfo=UTC), addons=[("voice", "voice-75")])
    assert raised.effective == "now"
    counted(account, "voice_tickets", 30, datetime(2026, 12, 12, tzinfo=UTC))  # within 75
    run_billing(as_of=JAN)
    cycle_end = close_of(account, datetime(2026, 12, 1, tzinfo=UTC))
    assert lines(cycle_end, "overage") == [("overage", "voice_tickets", 10, 1500)]


# --- C2: an upgrade lifts the Convert pause -------------------------------------------------


def test_C2_a_convert_upgrade_lifts_the_pause_at_once(opened):
    account = opened(NOV, slug="shop", plan="basic", addons=[("convert", "convert-50")])
    clicks = [
        {
            "id": f"k{i}",
            "type": "campaign_click",
            "session": f"s{i}",
            "campaign": "bf",
            "occurred_at": NOV + timedelta(days=2, minutes=i),
        }
        for i in range(53)
    ]
    ingest(account, clicks, now=NOV + timedelta(days=3))
    paused = Entitlement.objects.get(account=account, feature="convert_campaigns")
    assert paused.state == "paused"
    upgrade = change(account, NOV + timedelta(days=4), addons=[("convert", "convert-200")])
    assert upgrade.invoice.total_minor == 6067  # (10,000 − 3,000) × 26/30 days
    assert Entitlement.objects.get(account=account, feature="convert_campaigns").state == "active"
    assert Charge.objects.filter(meter="convert_clicks", status="final").count() == 53


# --- P6, P7: a mixed request is split ---------------------------------------------------------


def test_P6_P7_a_mixed_request_upgrades_now_and_schedules_the_downgrade(opened):
    account = opened(NOV, slug="shop", plan="basic", addons=[("voice", "voice-75")])
    result = change(account, NOV + timedelta(days=15), plan="pro", addons=[("voice", "voice-20")])
    assert result.effective == "now"
    assert [(line.kind, line.amount_minor) for line in result.invoice.lines.all()] == [
        ("proration", 15000)  # (36,000 − 6,000) × 15/30 days; Voice untouched until Dec 1
    ]
    assert [(c.addon.code, c.addon_tier.code, c.effective_at) for c in result.scheduled] == [
        ("voice", "voice-20", DEC)
    ]
    subscription = Subscription.objects.get(account=account)
    assert subscription.plan.code == "pro"
    assert subscription.addons.get().tier.code == "voice-75"
    run_billing(as_of=DEC)
    december_fees = lines(close_of(account, NOV), "plan_fee", "addon_fee")
    assert december_fees == [("plan_fee", None, 1, 36000), ("addon_fee", "voice_tickets", 1, 3000)]


# --- P6, P7: the latest request wins ----------------------------------------------------------


def test_P6_P7_an_upgrade_cancels_a_scheduled_downgrade_of_the_same_plan(opened):
    account = opened(NOV, slug="shop", plan="pro")
    down = change(account, NOV + timedelta(days=9), plan="basic")
    assert down.effective == "period_end" and down.superseded == []
    up = change(account, NOV + timedelta(days=15), plan="advanced")
    assert up.effective == "now"
    assert up.invoice.total_minor == 27000  # (90,000 − 36,000) × 15/30 days
    assert [c.pk for c in up.superseded] == [down.scheduled[0].pk]
    assert Subscription.objects.get(account=account).scheduled_changes.get().status == "canceled"
    run_billing(as_of=DEC)
    subscription = Subscription.objects.get(account=account)
    assert subscription.plan.code == "advanced"  # not Basic: the upgrade came later
    assert lines(close_of(account, NOV), "plan_fee") == [("plan_fee", None, 1, 90000)]


def test_P7_a_second_downgrade_of_an_add_on_replaces_the_first(opened):
    account = opened(NOV, slug="shop", plan="basic", addons=[("voice", "voice-250")])
    first = change(account, NOV + timedelta(days=3), addons=[("voice", "voice-75")])
    second = change(account, NOV + timedelta(days=4), addons=[("voice", None)])
    assert [c.pk for c in second.superseded] == [first.scheduled[0].pk]
    run_billing(as_of=DEC)
    assert not Subscription.objects.get(account=account).addons.exists()
    assert lines(close_of(account, NOV), "plan_fee", "addon_fee") == [
        ("plan_fee", None, 1, 6000)  # Basic alone from Dec 1: Voice removed, not Voice 75
    ]


def test_P6_P7_a_plan_upgrade_keeps_the_scheduled_interval_part_of_the_same_row(opened):
    account = opened(NOV, slug="shop", plan="pro", interval="year")
    down = change(account, NOV + timedelta(days=2), plan="basic", interval="month")
    assert [(c.plan.code, c.interval) for c in down.scheduled] == [("basic", "month")]
    up = change(account, NOV + timedelta(days=15), plan="advanced")
    # (900,000 − 360,000) × 350/365 days of the annual cycle = 517,808.2
    assert up.invoice.total_minor == 517808
    assert [c.pk for c in up.superseded] == [down.scheduled[0].pk]
    left = Subscription.objects.get(account=account).scheduled_changes.filter(status="scheduled")
    assert [(c.plan, c.interval, c.effective_at) for c in left] == [
        (None, "month", datetime(2027, 11, 1, tzinfo=UTC))
    ]


def test_P6_P7_a_change_to_another_item_leaves_a_scheduled_downgrade_alone(opened):
    account = opened(NOV, slug="shop", plan="pro", addons=[("voice", "voice-75")])
    down = change(account, NOV + timedelta(days=2), addons=[("voice", "voice-20")])
    up = change(account, NOV + timedelta(days=15), plan="advanced")
    assert up.superseded == []
    assert down.scheduled[0].__class__.objects.get(pk=down.scheduled[0].pk).status == "scheduled"


def test_P7_a_downgrade_scheduled_before_month_to_year_waits_for_the_annual_end(opened):
    account = opened(NOV, slug="shop", plan="basic", addons=[("voice", "voice-75")])
    down = change(account, NOV + timedelta(days=2), addons=[("voice", "voice-20")])
    assert down.effective_at == DEC
    change(account, NOV + timedelta(days=15), interval="year")
    row = Subscription.objects.get(account=account).scheduled_changes.get()
    assert (row.status, row.effective_at) == ("scheduled", datetime(2027, 11, 1, tzinfo=UTC))
    run_billing(as_of=DEC)
    # December is a month of the annual cycle: no fees, Voice 75 kept until Nov 1 2027.
    assert lines(close_of(account, NOV), "plan_fee", "addon_fee") == []
    assert Subscription.objects.get(account=account).addons.get().tier.code == "voice-75"
