"""Subscription changes (P6, P7) and the invoice endpoints, through the partner API."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from audit.models import AuditEntry
from audit.services import current_actor
from billing.models import Invoice
from billing.run import run_billing
from plans.models import ScheduledChange, Subscription

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # a 30-day period: Nov 1 → Dec 1
HALF = datetime(2026, 11, 16, tzinfo=UTC)


@pytest.fixture
def shop(make_account):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic", addons=[("voice", "voice-75")])
    run_billing(as_of=T0)
    return account


def change(api, body, at=HALF):
    with time_machine.travel(at, tick=False):
        return api.post("/api/v1/accounts/shop/subscription/changes", body, format="json")


def test_P6_an_upgrade_applies_now_and_bills_the_difference_to_the_second(shop, partner_api):
    response = change(partner_api, {"plan": "pro"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["effective"] == "now" and body["scheduled_changes"] == []
    invoice = body["invoice"]
    assert invoice["reason"] == "upgrade" and invoice["status"] == "open"
    assert invoice["total"] == {"amount": 15000, "currency": "USD"}  # (360 $ − 60 $) × 15/30 days
    assert [line["rules"] for line in invoice["lines"]] == [["P6"]]
    assert Subscription.objects.get(account=shop).plan.code == "pro"
    usage = partner_api.get("/api/v1/accounts/shop/usage").json()
    assert usage["meters"]["helpdesk_tickets"]["included"] == 2000  # the new allowance, now


def test_P6_an_add_on_tier_upgrade_is_prorated(shop, partner_api):
    body = change(partner_api, {"addons": [{"addon": "voice", "tier": "voice-250"}]}).json()
    assert body["invoice"]["total"] == {"amount": 8000, "currency": "USD"}  # (250 $ − 90 $) / 2


def test_P6_month_to_year_turns_the_current_month_into_an_annual_cycle(shop, partner_api):
    body = change(partner_api, {"interval": "year"}).json()
    assert body["effective"] == "now"
    kinds = [(line["kind"], line["amount"]["amount"]) for line in body["invoice"]["lines"]]
    # Unused half of the monthly fees credited; the annual cycle Nov 1 2026 → Nov 1 2027
    # (365 days) is paid for the 350 days from the change: 60,000 × 350/365 = 57,534.2 and
    # 90,000 × 350/365 = 86,301.4.
    assert kinds == [
        ("credit", -3000),
        ("credit", -4500),
        ("plan_fee", 57534),
        ("addon_fee", 86301),
    ]
    assert body["invoice"]["total"]["amount"] == 136335
    subscription = Subscription.objects.get(account=shop)
    # Nothing is re-anchored: the usage month keeps its shape.
    assert subscription.interval == "year" and subscription.current_period_start == T0
    assert subscription.current_period_end == datetime(2027, 11, 1, tzinfo=UTC)
    assert subscription.usage_period_start == T0
    assert subscription.usage_period_end == datetime(2026, 12, 1, tzinfo=UTC)
    assert subscription.billing_anchor == T0


def test_P7_a_downgrade_is_scheduled_for_the_cycle_end_and_can_be_cancelled(shop, partner_api):
    response = change(partner_api, {"plan": "starter"})
    assert response.status_code == 201
    body = response.json()
    assert body["effective"] == "period_end" and body["invoice"] is None
    assert body["effective_at"] == "2026-12-01T00:00:00Z"
    account = partner_api.get("/api/v1/accounts/shop").json()
    assert [c["id"] for c in account["subscription"]["scheduled_changes"]] == [body["id"]]
    cancel = partner_api.delete(f"/api/v1/accounts/shop/subscription/changes/{body['id']}")
    assert cancel.status_code == 204
    again = partner_api.delete(f"/api/v1/accounts/shop/subscription/changes/{body['id']}")
    assert again.status_code == 409
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))
    assert Subscription.objects.get(account=shop).plan.code == "basic"


def test_P7_removing_an_add_on_waits_for_the_cycle_end(shop, partner_api):
    body = change(partner_api, {"addons": [{"addon": "voice", "tier": None}]}).json()
    assert body["effective"] == "period_end"
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))
    subscription = Subscription.objects.get(account=shop)
    assert not subscription.addons.exists()
    close = Invoice.objects.get(account=shop, reason="period_close")
    assert [line.kind for line in close.lines.all()] == ["plan_fee"]  # no Voice fee any more


def test_P6_P7_an_upgrade_replaces_a_scheduled_downgrade_of_the_plan_and_says_so(shop, partner_api):
    scheduled = change(partner_api, {"plan": "starter"}, at=T0 + timedelta(days=5)).json()
    body = change(partner_api, {"plan": "pro"}).json()
    assert body["effective"] == "now"
    assert body["invoice"]["total"] == {"amount": 15000, "currency": "USD"}
    assert body["superseded_changes"] == [{"id": scheduled["id"], "change": "plan → Starter"}]
    assert ScheduledChange.objects.get(pk=scheduled["id"]).status == "canceled"


def test_P6_P7_a_mixed_request_applies_its_upgrade_now_and_schedules_its_downgrade(
    shop, partner_api
):
    body = change(partner_api, {"plan": "pro", "addons": [{"addon": "voice", "tier": None}]}).json()
    assert body["effective"] == "now"
    assert body["invoice"]["total"] == {"amount": 15000, "currency": "USD"}  # Pro, 15 of 30 days
    assert [c["change"] for c in body["scheduled_changes"]] == ["Voice → removed"]
    assert ScheduledChange.objects.filter(status="scheduled").count() == 1
    assert Subscription.objects.get(account=shop).plan.code == "pro"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"plan": "gold"}, "unknown_plan"),
        ({"addons": [{"addon": "voice", "tier": "voice-9"}]}, "unknown_addon"),
        ({}, "invalid"),
        ({"interval": "week"}, "invalid"),
    ],
)
def test_bad_change_requests_are_400(shop, partner_api, body, code):
    response = change(partner_api, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_a_change_to_the_current_terms_is_a_409_saying_so(shop, partner_api):
    """409, not 400: the body is valid, the subscription is already there (as for the callers
    that lose a race of identical upgrades, tests/api/test_concurrent_requests.py)."""
    response = change(partner_api, {"plan": "basic"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_change" and "already on these terms" in error["message"]


def test_other_tenants_cannot_change_or_cancel(shop, partner_api, other_partner_api):
    assert change(other_partner_api, {"plan": "pro"}).status_code == 404
    scheduled = change(partner_api, {"plan": "starter"}).json()
    response = other_partner_api.delete(
        f"/api/v1/accounts/shop/subscription/changes/{scheduled['id']}"
    )
    assert response.status_code == 404


def test_invoice_list_and_detail_with_lines_and_rules(shop, partner_api, other_partner_api):
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))
    listed = partner_api.get("/api/v1/accounts/shop/invoices").json()["results"]
    assert [i["reason"] for i in listed] == ["period_close", "subscription_start"]  # newest first
    detail = partner_api.get(f"/api/v1/invoices/{listed[0]['id']}").json()
    assert detail["number"] == "2026-000002" and detail["status"] == "open"
    assert detail["total"] == {"amount": 15000, "currency": "USD"}  # Basic 60 $ + Voice 90 $
    assert [line["rules"] for line in detail["lines"]] == [["P1"], ["P1", "P3"]]
    assert detail["status_history"][0]["to"] == "open"
    assert other_partner_api.get(f"/api/v1/invoices/{listed[0]['id']}").status_code == 404
    assert partner_api.get("/api/v1/invoices/999999").status_code == 404


def test_the_change_is_idempotent_with_a_key(shop, partner_api):
    with time_machine.travel(HALF, tick=False):
        first = partner_api.post(
            "/api/v1/accounts/shop/subscription/changes",
            {"plan": "pro"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="up-1",
        )
        again = partner_api.post(
            "/api/v1/accounts/shop/subscription/changes",
            {"plan": "pro"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="up-1",
        )
    assert first.json() == again.json()
    assert Invoice.objects.filter(reason="upgrade").count() == 1
    assert HALF + timedelta(0) == datetime.fromisoformat(first.json()["effective_at"])


def test_invoice_pdf_shows_the_number_lines_and_total(shop, partner_api, other_partner_api):
    from io import BytesIO

    from pypdf import PdfReader

    ingest_at = datetime(2026, 11, 5, tzinfo=UTC)
    from tests.metering.helpers import ingest

    ingest(
        shop,
        [
            {
                "id": "c",
                "type": "call",
                "ticket": "V1",
                "occurred_at": ingest_at,
                "channel": "phone",
                "direction": "inbound",
                "outcome": "answered",
            },
        ],
        now=ingest_at,
    )
    run_billing(as_of=datetime(2026, 12, 1, tzinfo=UTC))
    invoice = Invoice.objects.get(reason="period_close")
    response = partner_api.get(f"/api/v1/invoices/{invoice.pk}/pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert f"invoice-{invoice.number}.pdf" in response["Content-Disposition"]
    text = "".join(page.extract_text() for page in PdfReader(BytesIO(response.content)).pages)
    assert invoice.number in text and "Shop" in text
    assert "Basic plan" in text and "$150.00" in text
    assert other_partner_api.get(f"/api/v1/invoices/{invoice.pk}/pdf").status_code == 404


def test_a_change_after_billing_ran_ahead_of_the_clock_is_a_409_not_a_500(shop, partner_api):
    run_billing(as_of=datetime(2027, 3, 1, tzinfo=UTC))  # an operator's --as-of in the future
    response = change(partner_api, {"plan": "pro"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "cycle_not_started"
    assert error["details"] == {"current_period_start": "2027-03-01T00:00:00+00:00"}
    assert Subscription.objects.get(account=shop).plan.code == "basic"


def test_P6_a_partner_change_is_audited_as_the_partner_and_only_for_that_request(shop, partner_api):
    assert change(partner_api, {"plan": "pro"}).status_code == 201
    upgrade = AuditEntry.objects.get(action="subscription.upgraded")
    assert upgrade.source == "partner" and upgrade.actor.startswith("API key ")
    # The thread that served it serves whatever comes next as nobody in particular.
    assert current_actor().source == "system"
