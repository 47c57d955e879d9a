"""The Shopify stand-in speaks the Admin GraphQL subset of docs/shopify.md as Shopify does: through
real HTTP, with `gql` (the portal's client) and with raw urllib, against its own schema."""

import base64
import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportConnectionFailed, TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from graphql import GraphQLError

SHOP = "acme.myshopify.com"
TOKEN = "shpat_acme"

CREATE = gql(
    """
    mutation Create(
      $name: String!
      $lineItems: [AppSubscriptionLineItemInput!]!
      $returnUrl: URL!
      $replacementBehavior: AppSubscriptionReplacementBehavior
    ) {
      appSubscriptionCreate(
        name: $name
        lineItems: $lineItems
        returnUrl: $returnUrl
        replacementBehavior: $replacementBehavior
      ) {
        appSubscription { id status currentPeriodEnd lineItems { id } }
        confirmationUrl
        userErrors { field message }
      }
    }
    """
)
SUBSCRIPTION = gql(
    """
    query Subscription($id: ID!) {
      node(id: $id) {
        ... on AppSubscription {
          id name status createdAt currentPeriodEnd test returnUrl
          lineItems {
            id
            plan {
              pricingDetails {
                __typename
                ... on AppRecurringPricing { price { amount currencyCode } interval }
                ... on AppUsagePricing {
                  balanceUsed { amount currencyCode }
                  cappedAmount { amount currencyCode }
                  interval
                  terms
                }
              }
            }
          }
        }
      }
    }
    """
)
USAGE = gql(
    """
    mutation Usage($line: ID!, $price: MoneyInput!, $description: String!, $key: String) {
      appUsageRecordCreate(
        subscriptionLineItemId: $line
        price: $price
        description: $description
        idempotencyKey: $key
      ) {
        appUsageRecord { id createdAt description idempotencyKey price { amount currencyCode } }
        userErrors { field message }
      }
    }
    """
)
CAP_UPDATE = gql(
    """
    mutation Cap($id: ID!, $cap: MoneyInput!) {
      appSubscriptionLineItemUpdate(id: $id, cappedAmount: $cap) {
        appSubscription { id }
        confirmationUrl
        userErrors { field message }
      }
    }
    """
)
INSTALLATION = gql(
    """
    query {
      currentAppInstallation {
        activeSubscriptions {
          id
          lineItems { id usageRecords(first: 50) { edges { node { id price { amount } } } } }
        }
      }
      shopBillingPreferences { currency }
    }
    """
)


def request(document: GraphQLRequest, variables: dict) -> GraphQLRequest:
    return GraphQLRequest(document, variable_values=variables)


def client(stand_in, *, shop=SHOP, token=TOKEN, timeout=10) -> Client:
    transport = RequestsHTTPTransport(
        url=stand_in.admin_url.format(shop=shop),
        headers={"X-Shopify-Access-Token": token},
        timeout=timeout,
        retries=0,
    )
    return Client(transport=transport, fetch_schema_from_transport=True)


def raw(stand_in, query: str, variables=None, *, shop=SHOP, token=TOKEN) -> tuple[int, dict]:
    """One POST as any HTTP client would send it; the status and the JSON answer."""
    request = urllib.request.Request(
        stand_in.admin_url.format(shop=shop),
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json", "X-Shopify-Access-Token": token},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def lines(*, price="49.00", cap="100.00", currency="USD", interval="EVERY_30_DAYS") -> list:
    return [
        {
            "plan": {
                "appRecurringPricingDetails": {
                    "price": {"amount": price, "currencyCode": currency},
                    "interval": interval,
                }
            }
        },
        {
            "plan": {
                "appUsagePricingDetails": {
                    "cappedAmount": {"amount": cap, "currencyCode": currency},
                    "terms": "USD 0.40 per ticket over the plan's allowance",
                }
            }
        },
    ]


def create(gql_client, *, name="Pro", behavior=None, **line_args) -> dict:
    variables = {
        "name": name,
        "lineItems": lines(**line_args),
        "returnUrl": "http://127.0.0.1:9/billing/acme/shopify/return/",
        "replacementBehavior": behavior,
    }
    return gql_client.execute(request(CREATE, variables))["appSubscriptionCreate"]


def number_of(gid: str) -> int:
    return int(gid.rsplit("/", 1)[1])


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def active(stand_in, gql_client, **kwargs) -> dict:
    """An approved subscription: its GID, number and usage line."""
    created = create(gql_client, **kwargs)
    stand_in.approve(created["confirmationUrl"])
    sub = created["appSubscription"]
    return {"gid": sub["id"], "number": number_of(sub["id"]), "usage": sub["lineItems"][1]["id"]}


def usage(gql_client, line, amount, *, key=None, currency="USD") -> dict:
    variables = {
        "line": line,
        "price": {"amount": amount, "currencyCode": currency},
        "description": "Overage: 25 tickets over the allowance",
        "key": key,
    }
    return gql_client.execute(request(USAGE, variables))["appUsageRecordCreate"]


def pricing(gql_client, gid) -> list:
    node = gql_client.execute(request(SUBSCRIPTION, {"id": gid}))["node"]
    return [line["plan"]["pricingDetails"] for line in node["lineItems"]]


@pytest.fixture
def shop(shopify_standin):
    shopify_standin.shop(SHOP, TOKEN)
    return client(shopify_standin)


class Receiver:
    """The app's webhook address: a tiny local server that keeps what Shopify POSTs."""

    def __init__(self, status: int = 200):
        self.received: list[tuple[Message, bytes]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.headers, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/shopify/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def topics(self) -> list[str]:
        return [headers["X-Shopify-Topic"] for headers, _ in self.received]

    def payloads(self, topic: str) -> list[dict]:
        return [json.loads(b) for h, b in self.received if h["X-Shopify-Topic"] == topic]


@pytest.fixture
def receiver(shopify_standin):
    receiver = Receiver()
    shopify_standin.configure(webhook_url=receiver.url)
    yield receiver
    receiver.server.shutdown()


# --- approval ----------------------------------------------------------------------------------
def test_a_new_subscription_is_pending_until_approved_then_active_for_30_days(
    shopify_standin, shop
):
    created = create(shop)
    assert created["userErrors"] == []
    sub = created["appSubscription"]
    assert sub["status"] == "PENDING" and sub["currentPeriodEnd"] is None
    assert sub["id"].startswith("gid://shopify/AppSubscription/")
    recurring_line, usage_line = (line["id"] for line in sub["lineItems"])
    assert usage_line == f"gid://shopify/AppSubscriptionLineItem/{number_of(sub['id'])}?v=1&index=1"

    page = shopify_standin.page(created["confirmationUrl"])
    for shown in (SHOP, "Pro", "USD 49.00 every 30 days", "USD 100.00 per 30 days"):
        assert shown in page
    assert ">Approve</button>" in page and ">Decline</button>" in page

    back = shopify_standin.approve(created["confirmationUrl"])
    assert (
        back == f"http://127.0.0.1:9/billing/acme/shopify/return/?charge_id={number_of(sub['id'])}"
    )
    node = shop.execute(request(SUBSCRIPTION, {"id": sub["id"]}))["node"]
    approved = moment(shopify_standin.subscription(number_of(sub["id"]))["activated_at"])
    assert node["status"] == "ACTIVE"
    assert moment(node["currentPeriodEnd"]) == approved + timedelta(days=30)
    assert abs(approved - datetime.now(UTC)) < timedelta(minutes=1)  # the fixture's clock
    recurring, usage_pricing = pricing(shop, sub["id"])
    assert recurring["price"] == {"amount": "49.00", "currencyCode": "USD"}
    assert recurring["interval"] == "EVERY_30_DAYS"
    assert usage_pricing["cappedAmount"] == {"amount": "100.00", "currencyCode": "USD"}
    assert usage_pricing["balanceUsed"] == {"amount": "0.00", "currencyCode": "USD"}
    installation = shop.execute(INSTALLATION)
    assert [s["id"] for s in installation["currentAppInstallation"]["activeSubscriptions"]] == [
        sub["id"]
    ]
    assert installation["shopBillingPreferences"] == {"currency": "USD"}


def test_declined_subscription_is_declined_and_the_merchant_goes_back_to_the_app(
    shopify_standin, shop, receiver
):
    created = create(shop)
    back = shopify_standin.decline(created["confirmationUrl"])
    assert back.startswith("http://127.0.0.1:9/billing/acme/shopify/return/")
    node = shop.execute(request(SUBSCRIPTION, {"id": created["appSubscription"]["id"]}))
    assert node["node"]["status"] == "DECLINED"
    shopify_standin.webhooks_settled()
    assert [
        p["app_subscription"]["status"] for p in receiver.payloads("app_subscriptions/update")
    ] == ["DECLINED"]
    # A decided charge cannot be decided again: the page shows no buttons.
    assert ">Approve</button>" not in shopify_standin.page(created["confirmationUrl"])


def test_a_charge_not_approved_within_two_days_expires(shopify_standin, shop):
    created = create(shop)
    gid = created["appSubscription"]["id"]
    shopify_standin.clock(advance_days=1.9)
    assert shop.execute(request(SUBSCRIPTION, {"id": gid}))["node"]["status"] == "PENDING"
    shopify_standin.clock(advance_days=0.2)
    assert shop.execute(request(SUBSCRIPTION, {"id": gid}))["node"]["status"] == "EXPIRED"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(  # noqa: S310
            urllib.request.Request(created["confirmationUrl"], data=b"decision=approve"),
            timeout=10,
        )
    assert refused.value.code == 409
    assert "expired" in refused.value.read().decode()


def test_a_forged_confirmation_link_is_refused(shopify_standin, shop):
    created = create(shop)
    forged = created["confirmationUrl"].rsplit("=", 1)[0] + "=" + "0" * 64
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)  # noqa: S310
    assert refused.value.code == 403


# --- replacements ------------------------------------------------------------------------------
def test_an_immediate_replacement_cancels_the_old_one_and_keeps_its_interval(
    shopify_standin, shop, receiver
):
    old = active(shopify_standin, shop)
    old_end = shopify_standin.subscription(old["number"])["current_period_end"]
    shopify_standin.clock(advance_days=10)
    new = active(
        shopify_standin, shop, name="Pro + Voice", price="79.00", behavior="APPLY_IMMEDIATELY"
    )
    assert shopify_standin.subscription(old["number"])["status"] == "CANCELLED"
    replacement = shopify_standin.subscription(new["number"])
    assert (replacement["status"], replacement["current_period_end"]) == ("ACTIVE", old_end)
    shopify_standin.webhooks_settled()
    changes = [
        (p["app_subscription"]["admin_graphql_api_id"], p["app_subscription"]["status"])
        for p in receiver.payloads("app_subscriptions/update")
    ]
    assert changes == [(old["gid"], "ACTIVE"), (old["gid"], "CANCELLED"), (new["gid"], "ACTIVE")]


def test_a_replacement_on_the_next_cycle_starts_when_the_old_interval_ends(shopify_standin, shop):
    old = active(shopify_standin, shop)
    old_end = moment(shopify_standin.subscription(old["number"])["current_period_end"])
    new = active(
        shopify_standin, shop, name="Basic", price="19.00", behavior="APPLY_ON_NEXT_BILLING_CYCLE"
    )
    # Approved, not started: the old one still bills until its interval's end.
    assert shopify_standin.subscription(old["number"])["status"] == "ACTIVE"
    assert shopify_standin.subscription(new["number"])["status"] == "ACCEPTED"
    shopify_standin.clock(now=old_end - timedelta(seconds=5))
    assert shopify_standin.subscription(new["number"])["status"] == "ACCEPTED"
    shopify_standin.clock(now=old_end + timedelta(seconds=1))
    assert shopify_standin.subscription(old["number"])["status"] == "CANCELLED"
    started = shopify_standin.subscription(new["number"])
    assert started["status"] == "ACTIVE"
    assert moment(started["current_period_end"]) == old_end + timedelta(days=30)


# --- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line_args", "message"),
    [
        ({"currency": "EUR"}, "Currency must be the shop's billing currency (USD), not EUR"),
        ({"interval": "ANNUAL"}, "Annual subscriptions with usage line items aren't supported"),
        ({"cap": "0"}, "Capped amount must be greater than 0"),
    ],
)
def test_create_refuses_what_shopify_refuses_with_user_errors(
    shopify_standin, shop, line_args, message
):
    created = create(shop, **line_args)
    assert created["appSubscription"] is None and created["confirmationUrl"] is None
    assert created["userErrors"][0]["message"].startswith(message)
    assert shopify_standin.state()["subscriptions"] == []


# --- usage records, the cap, idempotency -------------------------------------------------------
def test_usage_over_the_cap_is_refused_with_shopifys_message(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    assert usage(shop, sub["usage"], "60.00")["userErrors"] == []
    # Through raw HTTP, as Shopify answers any client: 200 with the userError.
    status, answer = raw(
        shopify_standin,
        "mutation($l: ID!){ appUsageRecordCreate(subscriptionLineItemId: $l, "
        'price: {amount: "40.01", currencyCode: USD}, description: "Overage") '
        "{ appUsageRecord { id } userErrors { field message } } }",
        {"l": sub["usage"]},
    )
    assert status == 200
    assert answer["data"]["appUsageRecordCreate"] == {
        "appUsageRecord": None,
        "userErrors": [{"field": ["price"], "message": "Total price exceeds balance remaining"}],
    }
    # Exactly up to the cap fits.
    assert usage(shop, sub["usage"], "40.00")["userErrors"] == []
    assert pricing(shop, sub["gid"])[1]["balanceUsed"]["amount"] == "100.00"


def test_the_same_idempotency_key_returns_the_first_record_and_charges_once(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    first = usage(shop, sub["usage"], "12.50", key="invoice-7-line-3")["appUsageRecord"]
    again = usage(shop, sub["usage"], "99.00", key="invoice-7-line-3")["appUsageRecord"]
    assert again == first
    assert first["price"] == {"amount": "12.50", "currencyCode": "USD"}
    assert len(shopify_standin.state()["usage_records"]) == 1
    assert pricing(shop, sub["gid"])[1]["balanceUsed"]["amount"] == "12.50"
    # Another key is another record.
    usage(shop, sub["usage"], "1.00", key="invoice-7-line-4")
    edges = shop.execute(INSTALLATION)["currentAppInstallation"]["activeSubscriptions"][0]
    records = edges["lineItems"][1]["usageRecords"]["edges"]
    assert [e["node"]["price"]["amount"] for e in records] == ["1.00", "12.50"]


def test_an_idempotency_key_longer_than_255_characters_is_refused(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    refused = usage(shop, sub["usage"], "1.00", key="k" * 256)
    assert refused["userErrors"] == [
        {"field": ["idempotencyKey"], "message": "Idempotency key must be at most 255 characters"}
    ]
    assert usage(shop, sub["usage"], "1.00", key="k" * 255)["userErrors"] == []


def test_usage_is_refused_when_the_subscription_is_not_active(shopify_standin, shop, receiver):
    sub = active(shopify_standin, shop)
    shopify_standin.set_status(sub["number"], "FROZEN")
    assert (
        usage(shop, sub["usage"], "1.00")["userErrors"][0]["message"]
        == "Subscription is not active"
    )
    shopify_standin.set_status(sub["number"], "ACTIVE")
    assert usage(shop, sub["usage"], "1.00")["userErrors"] == []
    shopify_standin.webhooks_settled()
    statuses = [
        p["app_subscription"]["status"] for p in receiver.payloads("app_subscriptions/update")
    ]
    assert statuses == ["ACTIVE", "FROZEN", "ACTIVE"]


def test_balance_used_counts_only_the_current_30_day_interval(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    usage(shop, sub["usage"], "90.00")
    assert usage(shop, sub["usage"], "20.00")["userErrors"][0]["message"] == (
        "Total price exceeds balance remaining"
    )
    shopify_standin.clock(advance_days=30)
    assert pricing(shop, sub["gid"])[1]["balanceUsed"]["amount"] == "0.00"
    assert usage(shop, sub["usage"], "20.00")["userErrors"] == []
    end = moment(shopify_standin.subscription(sub["number"])["current_period_end"])
    activated = moment(shopify_standin.subscription(sub["number"])["activated_at"])
    assert end == activated + timedelta(days=60)


# --- cap raise ---------------------------------------------------------------------------------
def test_a_cap_raise_takes_effect_once_the_merchant_approves_it(shopify_standin, shop, receiver):
    sub = active(shopify_standin, shop)
    usage(shop, sub["usage"], "95.00")
    assert usage(shop, sub["usage"], "30.00")["userErrors"][0]["message"] == (
        "Total price exceeds balance remaining"
    )
    asked = shop.execute(
        request(
            CAP_UPDATE,
            {"id": sub["usage"], "cap": {"amount": "200.00", "currencyCode": "USD"}},
        )
    )["appSubscriptionLineItemUpdate"]
    assert asked["userErrors"] == []
    page = shopify_standin.page(asked["confirmationUrl"])
    assert "USD 100.00 per 30 days" in page and "USD 200.00 per 30 days" in page
    # Not raised until approved.
    assert pricing(shop, sub["gid"])[1]["cappedAmount"]["amount"] == "100.00"
    shopify_standin.approve(asked["confirmationUrl"])
    assert pricing(shop, sub["gid"])[1]["cappedAmount"]["amount"] == "200.00"
    assert usage(shop, sub["usage"], "30.00")["userErrors"] == []
    shopify_standin.webhooks_settled()
    updates = receiver.payloads("app_subscriptions/update")
    assert updates[-1]["app_subscription"]["capped_amount"] == "200.00"


def test_a_declined_cap_raise_leaves_the_cap_and_a_lower_cap_is_refused(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    ask = {"id": sub["usage"], "cap": {"amount": "150.00", "currencyCode": "USD"}}
    url = shop.execute(request(CAP_UPDATE, ask))["appSubscriptionLineItemUpdate"]["confirmationUrl"]
    shopify_standin.decline(url)
    assert pricing(shop, sub["gid"])[1]["cappedAmount"]["amount"] == "100.00"
    lower = ask | {"cap": {"amount": "50.00", "currencyCode": "USD"}}
    errors = shop.execute(request(CAP_UPDATE, lower))["appSubscriptionLineItemUpdate"]
    assert errors["userErrors"][0]["message"] == (
        "The capped amount must be greater than the existing capped amount"
    )


def test_the_merchant_raising_the_cap_in_shopify_sends_an_update(shopify_standin, shop, receiver):
    sub = active(shopify_standin, shop)
    shopify_standin.raise_cap(sub["number"], "250.00")
    assert pricing(shop, sub["gid"])[1]["cappedAmount"]["amount"] == "250.00"
    shopify_standin.webhooks_settled()
    update = receiver.payloads("app_subscriptions/update")[-1]["app_subscription"]
    assert (update["status"], update["capped_amount"]) == ("ACTIVE", "250.00")


# --- webhooks ----------------------------------------------------------------------------------
def test_crossing_90_percent_of_the_cap_sends_one_warning_per_interval(
    shopify_standin, shop, receiver
):
    sub = active(shopify_standin, shop)
    usage(shop, sub["usage"], "89.99")
    usage(shop, sub["usage"], "0.01")  # 90.00 of 100.00
    usage(shop, sub["usage"], "5.00")
    shopify_standin.webhooks_settled()
    warnings = receiver.payloads("app_subscriptions/approaching_capped_amount")
    assert len(warnings) == 1
    warning = warnings[0]["app_subscription"]
    assert (warning["balance_used"], warning["capped_amount"]) == ("90.00", "100.00")
    assert warning["admin_graphql_api_id"] == sub["gid"]
    # The next interval warns again.
    shopify_standin.clock(advance_days=30)
    usage(shop, sub["usage"], "91.00")
    shopify_standin.webhooks_settled()
    assert len(receiver.payloads("app_subscriptions/approaching_capped_amount")) == 2


def signed(body: bytes, secret: str) -> str:
    """Shopify's X-Shopify-Hmac-Sha256: base64 of the HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_webhooks_are_signed_with_the_apps_secret(shopify_standin, shop, receiver):
    active(shopify_standin, shop)
    shopify_standin.webhooks_settled()
    headers, body = receiver.received[0]
    assert hmac.compare_digest(
        headers["X-Shopify-Hmac-Sha256"], signed(body, "shpss_test_standin_secret")
    )
    assert shopify_standin.api_secret == "shpss_test_standin_secret"  # what settings verify with
    # Spelled as Shopify spells them.
    assert {
        "X-Shopify-Topic",
        "X-Shopify-Hmac-Sha256",
        "X-Shopify-Shop-Domain",
        "X-Shopify-Webhook-Id",
        "X-Shopify-API-Version",
        "X-Shopify-Triggered-At",
    } <= set(headers.keys())
    assert headers["X-Shopify-Topic"] == "app_subscriptions/update"
    assert headers["X-Shopify-Shop-Domain"] == SHOP
    assert headers["X-Shopify-API-Version"] == "2025-04"
    assert len(headers["X-Shopify-Webhook-Id"]) == 36
    # After a rotation the new secret signs: a receiver holding the old one would refuse it.
    shopify_standin.configure(api_secret="rotated")
    shopify_standin.uninstall(SHOP)
    shopify_standin.webhooks_settled()
    headers, body = receiver.received[-1]
    assert headers["X-Shopify-Hmac-Sha256"] == signed(body, "rotated")
    assert headers["X-Shopify-Hmac-Sha256"] != signed(body, shopify_standin.api_secret)


def test_a_failed_delivery_is_retried(shopify_standin, shop):
    failing = Receiver(status=500)
    shopify_standin.configure(webhook_url=failing.url)
    try:
        active(shopify_standin, shop)
        delivery = shopify_standin.webhooks_settled()[0]
    finally:
        failing.server.shutdown()
    assert (delivery["status"], delivery["attempts"]) == ("failed", 4)
    assert len(failing.received) == 4


def test_uninstalling_cancels_the_subscriptions_revokes_the_token_and_says_so(
    shopify_standin, shop, receiver
):
    sub = active(shopify_standin, shop)
    shopify_standin.uninstall(SHOP)
    assert shopify_standin.subscription(sub["number"])["status"] == "CANCELLED"
    shopify_standin.webhooks_settled()
    (uninstalled,) = receiver.payloads("app/uninstalled")
    shop_id = shopify_standin.state()["shops"][0]["id"]
    assert uninstalled == {"id": shop_id, "name": "acme", "domain": SHOP, "myshopify_domain": SHOP}
    status, _ = raw(shopify_standin, "{ shopBillingPreferences { currency } }")
    assert status == 401


# --- access and faults -------------------------------------------------------------------------
def test_a_wrong_access_token_is_401_and_an_unknown_shop_is_named(shopify_standin, shop):
    status, answer = raw(shopify_standin, "{ shopBillingPreferences { currency } }", token="nope")
    assert (status, answer) == (
        401,
        {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"},
    )
    status, answer = raw(
        shopify_standin, "{ shopBillingPreferences { currency } }", shop="x.myshopify.com"
    )
    assert status == 404
    assert "no shop 'x.myshopify.com'" in answer["errors"] and SHOP in answer["errors"]


def test_an_error_fault_answers_500_without_doing_the_work(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    shopify_standin.fault("error", count=1, operation="appUsageRecordCreate")
    # Another operation is not hit by it.
    assert shop.execute(INSTALLATION)["shopBillingPreferences"]["currency"] == "USD"
    with pytest.raises(TransportQueryError, match="Internal error"):
        usage(shop, sub["usage"], "5.00", key="k1")
    shopify_standin.fault("error", count=1)  # any operation
    status, answer = raw(shopify_standin, "{ shopBillingPreferences { currency } }")
    assert status == 500
    assert answer["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert shopify_standin.state()["usage_records"] == []
    assert usage(shop, sub["usage"], "5.00", key="k1")["userErrors"] == []  # spent: works again
    assert shopify_standin.state()["faults_fired"] == 2


def test_a_lost_answer_did_the_work_and_a_retry_with_the_key_replays_it(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    shopify_standin.fault("lose_answer", count=1, operation="appUsageRecordCreate")
    with pytest.raises(TransportConnectionFailed, match="Connection aborted"):
        usage(shop, sub["usage"], "5.00", key="k1")
    (record,) = shopify_standin.state()["usage_records"]
    again = usage(shop, sub["usage"], "5.00", key="k1")["appUsageRecord"]
    assert again["id"] == record["id"]
    assert len(shopify_standin.state()["usage_records"]) == 1


def test_a_timeout_fault_answers_after_the_client_gave_up(shopify_standin, shop):
    sub = active(shopify_standin, shop)
    shopify_standin.fault("timeout", count=1, operation="appUsageRecordCreate", seconds=1.5)
    with pytest.raises(TransportConnectionFailed, match="timed out"):
        client(shopify_standin, timeout=0.5).execute(
            request(
                USAGE,
                {
                    "line": sub["usage"],
                    "price": {"amount": "5.00", "currencyCode": "USD"},
                    "description": "Overage",
                    "key": "k1",
                },
            )
        )
    assert len(shopify_standin.state()["usage_records"]) == 1


# --- the schema --------------------------------------------------------------------------------
def test_gql_validates_queries_against_the_stand_ins_schema(shopify_standin, shop):
    """Introspection gives gql the stand-in's schema: a query naming a field Shopify's subset
    does not have fails in the client, before anything is sent."""
    with shop as session:
        session.execute(INSTALLATION)  # fetches the schema
        assert session.client.schema.get_type("AppUsagePricing") is not None
        with pytest.raises(GraphQLError, match="Cannot query field 'balanceRemaining'"):
            session.client.validate(
                gql("{ currentAppInstallation { activeSubscriptions { balanceRemaining } } }")
            )
    for document in (CREATE, SUBSCRIPTION, USAGE, CAP_UPDATE, INSTALLATION):
        shop.validate(document)
