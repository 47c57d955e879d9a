"""GET usage, a ticket's billing explanation, and entitlements."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

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
    }
    assert body["meters"]["voice_tickets"]["included"] is None  # no Voice add-on


@time_machine.travel(NOW, tick=False)
def test_usage_of_a_named_period_and_a_bad_period(basic, partner_api):
    october = partner_api.get("/api/v1/accounts/shop/usage", {"period": "2026-10"}).json()
    assert october["period"]["start"] == "2026-10-01T00:00:00Z"
    assert october["meters"]["helpdesk_tickets"]["used"] == 0
    bad = partner_api.get("/api/v1/accounts/shop/usage", {"period": "Nov 2026"})
    assert bad.status_code == 400 and "YYYY-MM" in bad.json()["error"]["message"]


@time_machine.travel(NOW, tick=False)
def test_F6_late_units_of_a_closed_period_are_shown_in_the_current_one(basic, partner_api):
    ingest(basic, answered_ticket(1, datetime(2026, 10, 30, tzinfo=UTC)), now=NOW)
    body = partner_api.get("/api/v1/accounts/shop/usage").json()
    assert body["meters"]["helpdesk_tickets"]["late"] == 1
    assert body["meters"]["helpdesk_tickets"]["used"] == 0


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
