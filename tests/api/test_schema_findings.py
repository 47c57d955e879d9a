"""What Schemathesis found where the schema and the API disagreed (issue 22, item 7), each pinned
by the request that showed it: the code fixed where it was wrong, the schema where it was.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing.models import Invoice
from billing.run import run_billing
from outbox.endpoint_url import pattern as url_pattern

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def published(client, component: str) -> dict:
    return client.get("/api/schema/?format=json").json()["components"]["schemas"][component]


# --- the code was wrong ---------------------------------------------------------------------


def test_a_form_content_type_on_a_post_without_body_is_not_a_500(
    partner_api, make_account, stripe_standin
):
    """The NUL-byte guard parsed the (boundary-less) form, so the Idempotency-Key could no
    longer read the body: 500. The API reads JSON only; the guard reads its body as bytes."""
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop", plan="pro")
        run_billing(as_of=T0)
    invoice = Invoice.objects.get()
    response = partner_api.generic(
        "POST",
        f"/api/v1/invoices/{invoice.pk}/retry",
        b"",
        content_type="multipart/form-data",
        HTTP_IDEMPOTENCY_KEY="retry-1",
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_payment_method"


def test_an_empty_idempotency_key_is_refused_not_ignored(partner_api, catalog):
    response = partner_api.post(
        "/api/v1/webhook-endpoints",
        {"url": "https://hooks.example/in"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


def test_a_change_between_a_cycles_end_and_its_close_is_a_409_not_a_500(
    partner_api, make_account, stripe_standin
):
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop", plan="basic")
        run_billing(as_of=T0)
    # The cycle ended on 1 December; billing has not closed it yet.
    with time_machine.travel(datetime(2026, 12, 1, 0, 3, tzinfo=UTC), tick=False):
        response = partner_api.post(
            "/api/v1/accounts/shop/subscription/changes", {"plan": "pro"}, format="json"
        )
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "cycle_not_closed"
        run_billing(as_of=datetime(2026, 12, 1, 0, 3, tzinfo=UTC))
        response = partner_api.post(
            "/api/v1/accounts/shop/subscription/changes", {"plan": "pro"}, format="json"
        )
    assert response.status_code == 201 and response.json()["effective"] == "now"


def test_a_payment_method_stripe_does_not_know_is_a_404_naming_the_field(
    partner_api, account, stripe_standin
):
    response = partner_api.put(
        "/api/v1/accounts/shop/payment-method", {"stripe_payment_method": "pm_0"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["details"] == {"field": "stripe_payment_method"}


def test_no_account_opens_in_a_currency_its_plan_is_not_sold_in(client, partner_api, catalog):
    """An account in AUD on Pro was opened, then every invoice and usage answer failed
    (`missing_terms`): the catalog sells in USD and EUR, and the schema now says so."""
    body = {"slug": "roo", "name": "Roo", "billing_email": "b@roo.example", "plan": "pro"}
    response = partner_api.post("/api/v1/accounts", body | {"currency": "AUD"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_sold_in_currency"
    assert "EUR, USD only" in response.json()["error"]["details"]["fields"]["currency"][0]
    currency = published(client, "AccountCreateInRequest")["properties"]["currency"]
    assert currency["allOf"][0]["enum"] == ["EUR", "USD"]
    response = partner_api.post("/api/v1/accounts", body | {"currency": "EUR"}, format="json")
    assert response.status_code == 201


# --- the schema was wrong -------------------------------------------------------------------


def test_the_schema_names_the_plans_and_tiers_a_request_may_use(client, catalog):
    plan = published(client, "ChangeInRequest")["properties"]["plan"]["allOf"][0]
    assert plan["enum"] == ["advanced", "basic", "pro", "starter"]  # not enterprise: negotiated
    opening = published(client, "AccountCreateInRequest")["properties"]["plan"]["allOf"][0]
    assert {"team", "professional", "growth"} < set(opening["enum"])  # editions and aliases
    voice = next(
        branch["properties"]
        for branch in published(client, "AddOnChoiceInRequest")["oneOf"]
        if branch["properties"]["addon"]["allOf"][0]["enum"] == ["voice"]
    )
    assert voice["tier"]["allOf"][0]["enum"] == ["voice-20", "voice-250", "voice-75"]


def test_a_change_must_name_something_in_the_schema_as_in_the_api(client, partner_api, account):
    assert {"required": ["plan"]} in published(client, "ChangeInRequest")["anyOf"]
    response = partner_api.post("/api/v1/accounts/shop/subscription/changes", {}, format="json")
    assert response.status_code == 400


@time_machine.travel(datetime(2026, 11, 20, tzinfo=UTC), tick=False)
@pytest.mark.parametrize(
    ("period", "valid"),
    [("2000-01", True), ("2027-12", True), ("2028-01", False), ("1999-12", False), ("", False)],
)
def test_the_usage_period_pattern_is_the_range_the_api_takes(
    client, partner_api, account, period, valid
):
    schema = client.get("/api/schema/?format=json").json()
    (parameter,) = [
        p
        for p in schema["paths"]["/api/v1/accounts/{slug}/usage"]["get"]["parameters"]
        if p["name"] == "period"
    ]
    assert bool(re.search(parameter["schema"]["pattern"], period)) is valid
    response = partner_api.get(f"/api/v1/accounts/shop/usage?period={period}")
    assert (response.status_code == 200) is valid


def test_a_ticket_id_with_a_control_character_is_refused_by_both(client, partner_api, account):
    schema = client.get("/api/schema/?format=json").json()
    path = schema["paths"]["/api/v1/accounts/{slug}/tickets/{ticket}/billing"]["get"]
    (ticket,) = [p for p in path["parameters"] if p["name"] == "ticket"]
    assert not re.search(ticket["schema"]["pattern"], "T\x081")
    response = partner_api.get("/api/v1/accounts/shop/tickets/T%081/billing")
    assert response.status_code == 400


def test_text_of_spaces_alone_is_refused_and_the_schema_says_so(client, partner_api, catalog):
    pattern = published(client, "EndpointInRequest")["properties"]["description"]["pattern"]
    assert re.search(pattern, "prod hooks") and not re.search(pattern, "   ")
    assert not re.search(pattern, "prod\u202e")  # a hidden character, refused by both
    response = partner_api.post(
        "/api/v1/webhook-endpoints",
        {"url": "https://hooks.example/in", "description": "   "},
        format="json",
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("url", "in_pattern", "accepted"),
    [
        ("https://hooks.example/in?x=1#y", True, True),
        ("https://user:secret@hooks.partner.example.com:8443/in", True, True),
        ("https://8.8.8.8/hook", True, True),
        ("https://[2606:4700:4700::1111]/hook", True, True),
        ("https://hooks.example./in", True, True),
        ("https://hooks.example/caf%C3%A9", True, True),
        ("http://hooks.example/in", False, False),  # https only (WEBHOOK_ALLOW_HTTP is off)
        ("https://hooks/in", False, False),  # no top-level label
        ("https://hooks.example/café", False, False),  # RFC 3986: percent-encode it
        ("https://hooks.example/a b", False, False),
        ("https://hooks.example/\x7f", False, False),  # was stored, and read back as no URI
        # What the pattern cannot say, the description does: a host that is not public.
        ("https://10.0.0.7/in", True, False),
        ("https://a.localhost/in", True, False),
    ],
)
def test_the_webhook_url_pattern_is_the_grammar_the_api_takes(
    client, partner_api, url, in_pattern, accepted
):
    published_pattern = published(client, "EndpointInRequest")["properties"]["url"]["pattern"]
    assert published_pattern == url_pattern(allow_http=False)
    assert bool(re.search(published_pattern, url)) is in_pattern
    response = partner_api.post("/api/v1/webhook-endpoints", {"url": url}, format="json")
    assert (response.status_code == 201) is accepted, response.content


def test_the_event_schema_and_the_ingest_agree_field_by_field(client, partner_api, make_account):
    """The schema is drawn from the validator's own tables: what one requires, so does the
    other."""
    message = published(client, "UsageEventMessage")
    assert set(message["required"]) == {"id", "type", "occurred_at", "ticket", "channel", "author"}
    assert published(client, "EventBatchRequest")["properties"]["events"]["minItems"] == 1
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop")
    event = {
        "id": "e-1",
        "account": "shop",
        "type": "message",
        "occurred_at": (T0 + timedelta(days=3)).isoformat(),
        "ticket": "T-1",
        "channel": "email",
        "author": "customer",
    }
    without_channel = {key: value for key, value in event.items() if key != "channel"} | {
        "id": "e-2"
    }
    with time_machine.travel(T0 + timedelta(days=4), tick=False):
        batch = {"events": [event, without_channel]}
        response = partner_api.post("/api/v1/events", batch, format="json")
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["error"]["details"] == {"field": "channel"}


def _enum(schema: dict, components: dict | None = None) -> list:
    """A published enum: inline, wrapped in allOf, or a component's."""
    if "$ref" in schema:
        return _enum((components or {})[schema["$ref"].rsplit("/", 1)[1]], components)
    if "allOf" in schema:
        return _enum(schema["allOf"][0], components)
    return schema["enum"]


def test_30_days_is_never_an_interval_a_request_offers_but_answers_show_it(client, catalog):
    components = client.get("/api/schema/?format=json").json()["components"]["schemas"]

    def interval_enum(component: str) -> list:
        return _enum(components[component]["properties"]["interval"], components)

    for component in ("AccountCreateInRequest", "ChangeInRequest", "SubscriptionStartInRequest"):
        assert interval_enum(component) == ["month", "year"], component
    assert "30d" in interval_enum("SubscriptionOut")


@pytest.mark.parametrize(
    ("domain", "valid"),
    [
        ("my-store.myshopify.com", True),
        ("My-Store.myshopify.com", False),  # the API takes it as written: lower case
        (" my-store.myshopify.com", False),
        ("my-store.example", False),
        ("-store.myshopify.com", False),
    ],
)
def test_the_shop_domain_pattern_is_the_one_the_api_takes(
    client, partner_api, catalog, shopify_standin, domain, valid
):
    shop = published(client, "ShopifyShopInRequest")["properties"]["shop_domain"]
    assert bool(re.search(shop["pattern"], domain)) is valid
    response = partner_api.post(
        "/api/v1/accounts",
        {
            "slug": "bloom",
            "name": "Bloom",
            "billing_email": "billing@bloom.example",
            "plan": "pro",
            "billing_channel": "shopify",
            "shopify": {"shop_domain": domain, "access_token": "shpat_0"},
        },
        format="json",
    )
    # A well-formed domain reaches Shopify, which does not know this shop: a conflict.
    assert response.status_code == (409 if valid else 400)


def test_a_shop_only_with_the_shopify_channel_in_the_schema_as_in_the_api(client, catalog):
    card, shopify = published(client, "AccountCreateInRequest")["anyOf"]
    assert card["not"] == {"required": ["shopify"]}
    assert set(shopify["required"]) == {"billing_channel", "shopify"}
    assert _enum(shopify["properties"]["interval"]) == ["month"]  # no annual through Shopify
