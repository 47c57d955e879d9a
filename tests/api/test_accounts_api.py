"""POST/GET /api/v1/accounts and GET /api/v1/plans, with api.md's conventions."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.models import Account
from plans.models import Subscription

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def new_account(**overrides) -> dict:
    body = {
        "slug": "bloom",
        "name": "Bloom Cosmetics",
        "billing_email": "billing@bloom.example",
        "currency": "EUR",
        "plan": "pro",
        "interval": "year",
        "addons": [{"addon": "voice", "tier": "voice-75"}],
    }
    return body | overrides


@time_machine.travel(NOW, tick=False)
def test_partner_creates_an_account_with_its_subscription(partner_api, catalog):
    response = partner_api.post("/api/v1/accounts", new_account(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (
        body["slug"] == "bloom" and body["currency"] == "EUR" and body["partner"] == "Acme Partners"
    )
    sub = body["subscription"]
    assert sub["plan"] == "pro" and sub["interval"] == "year" and sub["status"] == "active"
    assert sub["addons"] == [{"addon": "voice", "tier": "voice-75"}]
    assert sub["current_period"] == {"start": "2026-11-22T12:00:00Z", "end": "2027-11-22T12:00:00Z"}
    assert body["integrations_count"] == 0
    assert body["integrations_included"] == 150 and body["integrations_within_plan"] is True


@time_machine.travel(NOW, tick=False)
def test_migrated_customer_keeps_its_cycle(partner_api, catalog):
    body = new_account(interval="month", period_start="2026-10-05T08:00:00+02:00")
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["subscription"]["current_period"] == {
        "start": "2026-11-05T06:00:00Z",
        "end": "2026-12-05T06:00:00Z",
    }
    assert Subscription.objects.get(account__slug="bloom").is_migrated


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"plan": "gold"}, "plan"),
        ({"currency": "XYZ"}, "currency"),
        ({"interval": "week"}, "interval"),
        ({"slug": "not a slug!"}, "slug"),
        ({"billing_email": "nope"}, "billing_email"),
        ({"addons": [{"addon": "voice", "tier": "voice-9999"}]}, "addon"),
        ({"period_start": "2026-10-05T08:00:00"}, "period_start"),  # no offset
        ({"period_start": "tomorrow"}, "period_start"),  # in the future (computed from now)
    ],
)
def test_bad_account_input_names_the_field_and_creates_nothing(
    partner_api, catalog, overrides, field
):
    if overrides.get("period_start") == "tomorrow":
        overrides = {"period_start": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    response = partner_api.post("/api/v1/accounts", new_account(**overrides), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in str(error["details"]) or field in error["message"], error
    assert not Account.objects.filter(slug=new_account(**overrides)["slug"]).exists()


def test_a_taken_slug_is_refused_without_telling_whose_it_is(
    partner_api, other_partner_api, account
):
    """Held by the caller, by another tenant, or reserved: the same answer, word for word."""
    answers = [
        api.post("/api/v1/accounts", new_account(slug=slug), format="json")
        for api, slug in [(partner_api, account.slug), (other_partner_api, account.slug)]
    ]
    answers.append(partner_api.post("/api/v1/accounts", new_account(slug="admin"), format="json"))
    assert {a.status_code for a in answers} == {409}
    bodies = [a.json()["error"] for a in answers]
    assert bodies[0] == bodies[1]
    assert {b["code"] for b in bodies} == {"slug_unavailable"}
    assert bodies[2]["message"] == bodies[0]["message"].replace(account.slug, "admin")
    assert other_partner_api.get(f"/api/v1/accounts/{account.slug}").status_code == 404


def test_every_field_error_is_listed_at_once_the_catalog_included(partner_api, catalog):
    body = new_account(plan="gold", currency="XYZ", addons=[{"addon": "voice", "tier": "voice-9"}])
    del body["billing_email"]
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["details"]["fields"]
    assert set(fields) == {"plan", "currency", "addons", "billing_email"}
    assert fields["plan"] == ["Unknown plan 'gold'."]


def test_enterprise_needs_negotiated_terms(partner_api, catalog):
    response = partner_api.post("/api/v1/accounts", new_account(plan="enterprise"), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_account_terms"
    assert not Account.objects.filter(slug="bloom").exists()


def test_an_account_key_cannot_create_accounts(account_api):
    response = account_api.post("/api/v1/accounts", new_account(), format="json")
    assert response.status_code == 403


def test_idempotency_key_replays_the_first_response_and_refuses_another_body(partner_api, catalog):
    first = partner_api.post(
        "/api/v1/accounts", new_account(), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    again = partner_api.post(
        "/api/v1/accounts", new_account(), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Account.objects.filter(slug="bloom").count() == 1
    other = partner_api.post(
        "/api/v1/accounts", new_account(name="Other"), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_partner_reads_its_account(partner_api, account):
    response = partner_api.get(f"/api/v1/accounts/{account.slug}")
    assert response.status_code == 200
    assert response.json()["subscription"]["plan"] == "basic"


def test_other_tenants_get_404_never_403(other_partner_api, account_api, make_account, account):
    assert other_partner_api.get(f"/api/v1/accounts/{account.slug}").status_code == 404
    elsewhere = make_account(slug="elsewhere")
    response = account_api.get(f"/api/v1/accounts/{elsewhere.slug}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    missing = account_api.get("/api/v1/accounts/does-not-exist")
    # the same answer as for an account that does not exist: nothing tells them apart
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No account 'does-not-exist'."
    assert response.json()["error"]["message"] == "No account 'elsewhere'."


def test_account_list_is_scoped_and_newest_first(partner_api, make_account, other_partner_api):
    make_account(slug="first")
    make_account(slug="second")
    slugs = [a["slug"] for a in partner_api.get("/api/v1/accounts").json()["results"]]
    assert slugs == ["second", "first"]
    assert other_partner_api.get("/api/v1/accounts").json()["results"] == []


def test_plans_lists_the_catalog_with_prices(partner_api, catalog):
    body = partner_api.get("/api/v1/plans").json()
    plans = {p["code"]: p for p in body["plans"]}
    assert list(plans) == ["starter", "basic", "pro", "advanced", "enterprise"]
    basic = plans["basic"]
    assert {"amount": 6000, "currency": "USD"} in basic["prices"]["fee"]["month"]
    assert {"amount": 60000, "currency": "USD"} in basic["prices"]["fee"]["year"]
    assert {"amount": 4000, "currency": "USD"} in basic["prices"]["overage"]["month"]
    assert basic["allowances"] == [
        {
            "meter": "helpdesk_tickets",
            "included_per_month": 300,
            "overage": "per_block",
            "block_size": 100,
        }
    ]
    assert plans["enterprise"]["custom_pricing"] is True and plans["enterprise"]["prices"] == {}
    addons = {a["code"]: a for a in body["addons"]}
    assert addons["convert"]["tiers"][0]["allowances"][0]["overage"] == "hard_cap"
    assert [e["code"] for e in body["editions"]] == ["team", "professional", "enterprise_suite"]


def test_malformed_json_and_unknown_endpoints_answer_json_errors(partner_api, catalog):
    response = partner_api.generic(
        "POST", "/api/v1/accounts", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    missing = partner_api.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_openapi_schema_is_published(partner_api, catalog, client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/accounts" in response.content


def test_one_idempotency_key_on_another_route_is_a_reuse_not_a_replay(partner_api, catalog):
    first = partner_api.post(
        "/api/v1/accounts", new_account(), format="json", HTTP_IDEMPOTENCY_KEY="k-2"
    )
    assert first.status_code == 201
    elsewhere = partner_api.post(
        "/api/v1/webhook-endpoints", new_account(), format="json", HTTP_IDEMPOTENCY_KEY="k-2"
    )
    assert elsewhere.status_code == 409
    assert elsewhere.json()["error"]["code"] == "idempotency_key_reused"
