"""Forecasts on the usage summary: no projection from a few seconds, hard caps and pauses
respected, and every forecast says how it was made."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metering import selectors
from metering.models import Entitlement
from plans.models import Subscription
from tests.billing.charges import counted

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
HALF = NOV + timedelta(days=15)  # 15 of November's 30 days


@pytest.fixture
def opened(make_account):
    def open_at(at, **kwargs):
        with time_machine.travel(at, tick=False):
            return make_account(**kwargs)

    return open_at


def meter_of(account, meter, now, start=NOV, end=DEC):
    subscription = Subscription.objects.get(account=account)
    usage = selectors.usage_summary(
        account=account, subscription=subscription, start=start, end=end, now=now
    )
    [found] = [m for m in usage.meters if m.meter == meter]
    return found


def test_P3_thirty_four_seconds_in_one_sms_is_not_projected_to_millions(opened):
    account = opened(NOV, slug="shop", plan="basic", addons=[("sms", "sms-20")])
    counted(account, "sms_tickets", 1, NOV + timedelta(seconds=10))
    sms = meter_of(account, "sms_tickets", NOV + timedelta(seconds=34))
    # The pace would say 1 × 2,592,000 / 34 = 76,235 tickets, (76,235 − 20) × 100 cents.
    assert (sms.forecast_units, sms.forecast_amount_minor) == (1, 0)
    assert sms.forecast_method == "so_far" and "Too early" in sms.forecast_note


def test_P2_too_early_for_a_pace_the_forecast_is_the_last_periods_count(opened):
    account = opened(OCT, slug="shop", plan="basic")
    counted(account, "helpdesk_tickets", 450, OCT + timedelta(days=3))
    counted(account, "helpdesk_tickets", 10, NOV + timedelta(hours=2))
    tickets = meter_of(account, "helpdesk_tickets", NOV + timedelta(days=2))
    assert (tickets.forecast_units, tickets.forecast_method) == (450, "last_period")
    assert tickets.forecast_amount_minor == 8000  # 150 over 300 → 2 blocks of 4,000


def test_P2_past_three_days_the_forecast_is_the_pace(opened):
    account = opened(NOV, slug="shop", plan="basic")
    counted(account, "helpdesk_tickets", 310, NOV + timedelta(days=1))
    tickets = meter_of(account, "helpdesk_tickets", HALF)
    assert (tickets.forecast_units, tickets.forecast_method) == (620, "pace")
    assert tickets.forecast_amount_minor == 16000  # 320 over → 4 blocks
    assert tickets.forecast_note == "At this pace: 15 of 30 days gone."


def test_C2_the_convert_forecast_stops_at_the_hard_cap(opened):
    account = opened(NOV, slug="shop", plan="basic", addons=[("convert", "convert-50")])
    counted(account, "convert_clicks", 40, NOV + timedelta(days=1))
    clicks = meter_of(account, "convert_clicks", HALF)
    assert (clicks.forecast_units, clicks.forecast_method) == (50, "capped")  # not 80
    assert clicks.forecast_amount_minor == 0 and "(C2)" in clicks.forecast_note


def test_C2_while_campaigns_are_paused_nothing_more_is_forecast(opened):
    account = opened(NOV, slug="shop", plan="basic", addons=[("convert", "convert-50")])
    counted(account, "convert_clicks", 50, NOV + timedelta(days=1))
    Entitlement.objects.create(
        account=account, feature="convert_campaigns", state="paused", until=DEC
    )
    clicks = meter_of(account, "convert_clicks", HALF)
    assert (clicks.forecast_units, clicks.forecast_method) == (50, "paused")


def test_Z9_pause_caps_the_resolution_forecast_at_the_months_limit(opened):
    # Professional, 7 agents, monthly: 70 a month, AI pauses at the limit.
    account = opened(OCT, slug="zen", plan="professional", full_agents=7)
    Subscription.objects.filter(account=account).update(ai_at_limit="pause")
    counted(account, "automated_resolutions", 70, OCT + timedelta(days=3))  # October's own
    counted(account, "automated_resolutions", 50, NOV + timedelta(days=1))
    resolutions = meter_of(account, "automated_resolutions", HALF)
    assert (resolutions.forecast_units, resolutions.forecast_method) == (70, "capped")
    assert resolutions.forecast_amount_minor == 0


def test_Z9_keep_on_a_monthly_edition_forecasts_overage_against_the_month_only(opened):
    account = opened(OCT, slug="zen", plan="professional", full_agents=7)
    counted(account, "automated_resolutions", 70, OCT + timedelta(days=3))
    counted(account, "automated_resolutions", 40, NOV + timedelta(days=1))
    resolutions = meter_of(account, "automated_resolutions", HALF)
    assert (resolutions.overage_units, resolutions.overage_amount_minor) == (0, 0)
    # 80 by the pace: 10 over November's 70, at 200 cents (October's 70 are not counted).
    assert (resolutions.forecast_units, resolutions.forecast_amount_minor) == (80, 2000)


def test_P2_the_forecast_of_a_period_that_is_over_is_what_was_counted(opened):
    account = opened(NOV, slug="shop", plan="basic")
    counted(account, "helpdesk_tickets", 310, NOV + timedelta(days=1))
    tickets = meter_of(account, "helpdesk_tickets", DEC + timedelta(days=3))
    assert (tickets.forecast_units, tickets.forecast_method) == (310, "final")
    assert tickets.forecast_amount_minor == 4000
