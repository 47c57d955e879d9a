"""GET usage, a ticket's billing explanation, and entitlements."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.models import Account
from billing.models import UsageClose
from billing.run import run_billing
from tests.billing.charges import counted

from .helpers import ingest

PERIOD = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 16, tzinfo=UTC)  # half-way through a 30-day period
H = timedelta(hours=1)


def answered_ticket(n: int, at: datetime) -> list[dict]:
    return [
        {
            "id": f"{n}-c",
            "type": "message",
            "ticket": f"T{n}",
            "occurred_at": at,
            "channel": "chat",
            "author": "customer",
        },
        {
            "id": f"{n}-a",
            "type": "message",
            "ticket": f"T{n}",
            "occurred_at": at + H,
            "channel": "chat",
            "author": "agent",
        },
    ]


@pytest.fixture
def basic(make_account):
    # Migrated mid-period at NOW: the events of its period under way count (P1), none before.
    with time_machine.travel(NOW, tick=False):
        return make_account(slug="shop", plan="basic", period_start=PERIOD)


@time_machine.travel(NOW, tick=False)
def test_P2_usage_shows_used_included_overage_and_forecast(basic, partner_api):
    events = [e for n in range(310) for e in answered_ticket(n, PERIOD + n * timedelta(minutes=30))]
    for start in range(0, len(events), 1000):
        ingest(basic, events[start : start + 1000], now=NOW)
    body = partner_api.get("/api/v1/accounts/shop/usage").json()
    assert body["period"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    tickets = body["meters"]["helpdesk_tickets"]
    assert tickets["used"] == 310 and tickets["included"] == 300
    assert tickets["overage_units"] == 10
    assert tickets["overage_amount"] == {"amount": 4000, "currency": "USD"}  # one block of 100
    # half the period gone: 620 projected, 320 over → 4 blocks
    assert tickets["forecast"] == {
        "units": 620,
        "overage_amount": {"amount": 16000, "currency": "USD"},
        "method": "pace",
        "note": "At this pace: 15 of 30 days gone.",
        "pace_from": "2026-11-04T00:00:00Z",
        "ceiling": None,
    }
    assert body["meters"]["voice_tickets"]["included"] is None  # no Voice add-on


@time_machine.travel(NOW, tick=False)
def test_usage_of_a_named_period_and_a_bad_period(basic, partner_api):
    october = partner_api.get("/api/v1/accounts/shop/usage", {"period": "2026-10"}).json()
    assert october["period"]["start"] == "2026-10-01T00:00:00Z"
    assert october["meters"]["helpdesk_tickets"]["used"] == 0
    bad = partner_api.get("/api/v1/accounts/shop/usage", {"period": "Nov 2026"})
    assert bad.status_code == 400 and "YYYY-MM" in bad.json()["error"]["message"]


def test_F6_late_counts_only_units_of_invoiced_periods_not_invoiced_yet(make_account, partner_api):
    october = datetime(2026, 10, 1, tzinfo=UTC)
    with time_machine.travel(october, tick=False):
        make_account(slug="shop", plan="basic")
    shop = Account.objects.get(slug="shop")
    # Two October tickets reach us after October ended but before its close ran: they are
    # October's own units, invoiced by the close, never late.
    ingest(shop, answered_ticket(1, datetime(2026, 10, 30, tzinfo=UTC)), now=PERIOD + H)
    run_billing(as_of=PERIOD + 2 * H)
    assert UsageClose.objects.get(period_start=october).billed_units == {"helpdesk_tickets": 1}
    # One more October ticket after the close: late, and billed with November (F6).
    ingest(shop, answered_ticket(2, datetime(2026, 10, 29, tzinfo=UTC)), now=NOW)

    def late(period=None, at=NOW):
        with time_machine.travel(at, tick=False):
            query = {"period": period} if period else {}
            body = partner_api.get("/api/v1/accounts/shop/usage", query).json()
        return body["meters"]["helpdesk_tickets"]["late"]

    assert late() == 1  # November, the open period: the one late ticket
    assert late("2026-10") == 0  # October's invoice is out: nothing of it is pending there
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))  # November's invoice bills it
    december = datetime(2026, 12, 2, tzinfo=UTC)
    assert late(at=december) == 0 and late("2026-11", at=december) == 0


def test_the_forecast_says_how_it_was_made_in_the_api(make_account, partner_api):
    with time_machine.travel(PERIOD, tick=False):
        make_account(slug="shop", plan="basic", addons=[("convert", "convert-50")])
    counted(Account.objects.get(slug="shop"), "convert_clicks", 40, PERIOD + H)
    with time_machine.travel(PERIOD + timedelta(seconds=34), tick=False):
        early = partner_api.get("/api/v1/accounts/shop/usage").json()["meters"]
    assert early["helpdesk_tickets"]["forecast"] == {
        "units": 0,
        "overage_amount": {"amount": 0, "currency": "USD"},
        "method": "so_far",
        "note": "Too early for a pace and no more in the last period: so far.",
        "pace_from": "2026-11-04T00:00:00Z",
        "ceiling": None,
    }
    with time_machine.travel(NOW, tick=False):
        half = partner_api.get("/api/v1/accounts/shop/usage").json()["meters"]
    clicks = half["convert_clicks"]["forecast"]
    # 40 clicks half-way would pace to 80: cut at Convert 50's hard cap (C2).
    assert (clicks["units"], clicks["method"], clicks["ceiling"]) == (50, "capped", 50)
    assert clicks["note"].endswith("Capped at the limit of 50 (C2).")


def test_the_usage_schema_documents_the_forecast_method_and_late(client, catalog):
    schema = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    forecast = schema["UsageForecast"]["properties"]
    assert {"method", "note", "pace_from", "ceiling"} <= set(forecast)
    assert "not invoiced yet" in schema["MeterUsage"]["properties"]["late"]["description"]


@time_machine.travel(NOW, tick=False)
def test_H5_ticket_billing_explains_why_not(basic, partner_api):
    ingest(
        basic,
        [
            {
                "id": "c",
                "type": "message",
                "ticket": "FB1",
                "occurred_at": NOW - 2 * H,
                "channel": "facebook_comment",
                "author": "customer",
            },
            {
                "id": "a",
                "type": "message",
                "ticket": "FB1",
                "occurred_at": NOW - H,
                "channel": "facebook_comment",
                "author": "agent",
            },
        ],
        now=NOW,
    )
    body = partner_api.get("/api/v1/accounts/shop/tickets/FB1/billing").json()
    helpdesk = body["meters"]["helpdesk_tickets"]
    assert helpdesk["counted"] is False
    assert helpdesk["not_counted"] == [{"rules": ["H5"]}]


@time_machine.travel(NOW, tick=False)
def test_H1_ticket_billing_explains_when_and_why(basic, partner_api):
    ingest(basic, answered_ticket(7, NOW - 3 * H), now=NOW)
    body = partner_api.get("/api/v1/accounts/shop/tickets/T7/billing").json()
    [unit] = body["meters"]["helpdesk_tickets"]["units"]
    assert unit["status"] == "final" and unit["billable_at"] == "2026-11-15T22:00:00Z"
    assert unit["period_start"] == "2026-11-01T00:00:00Z"
    assert "H1" in unit["rules"]


def test_ticket_billing_of_another_tenant_or_unknown_ticket_is_404(
    basic, other_partner_api, partner_api
):
    assert other_partner_api.get("/api/v1/accounts/shop/tickets/T1/billing").status_code == 404
    assert partner_api.get("/api/v1/accounts/shop/tickets/nope/billing").status_code == 404


def test_entitlements_default_to_active(basic, partner_api):
    body = partner_api.get("/api/v1/accounts/shop/entitlements").json()
    assert {k: body[k] for k in ("convert_campaigns", "ai_agents", "helpdesk")} == {
        "convert_campaigns": "active",
        "ai_agents": "active",
        "helpdesk": "active",
    }


def test_F4_a_suspended_subscription_shows_helpdesk_suspended(basic, partner_api):
    basic.subscriptions.update(status="suspended")
    assert partner_api.get("/api/v1/accounts/shop/entitlements").json()["helpdesk"] == "suspended"
