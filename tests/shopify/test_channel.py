"""The billing channel at creation (issue 24, item 1): a partner or an operator creates an account
that pays through Shopify, with its shop; the shop's access token is kept encrypted and never
comes back out (no API answer, no log, no admin page)."""

import logging

import pytest

from accounts.models import Account, BillingChannel, ShopifyShop
from billing.models import ShopifyStatus, ShopifySubscription
from plans.models import Subscription

from .flows import deliver, sent

SHOP = "bloom.myshopify.com"
TOKEN = "shpat_channel_secret_0123456789"


def shopify_account(**overrides) -> dict:
    body = {
        "slug": "bloom",
        "name": "Bloom Cosmetics",
        "billing_email": "billing@bloom.example",
        "currency": "USD",
        "plan": "basic",
        "billing_channel": "shopify",
        "shopify": {"shop_domain": SHOP, "access_token": TOKEN},
    }
    return body | overrides


@pytest.fixture
def shop(shopify_standin, catalog):
    shopify_standin.shop(SHOP, TOKEN, "USD")
    return shopify_standin


def test_partner_creates_a_shopify_account_waiting_for_approval(partner_api, shop, caplog):
    caplog.set_level(logging.DEBUG)
    response = partner_api.post("/api/v1/accounts", shopify_account(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["billing_channel"] == "shopify"
    assert body["shopify"]["shop_domain"] == SHOP
    # No subscription of ours before Shopify says ACTIVE: only the approval link.
    assert body["subscription"] is None
    assert body["shopify"]["confirmation_url"].startswith(shop.url)
    account = Account.objects.get(slug="bloom")
    assert account.pays_through_shopify and not Subscription.objects.filter(account=account)
    app = ShopifySubscription.objects.get(account=account)
    assert app.status == ShopifyStatus.PENDING and app.name == "Basic plan"
    # Shopify was asked for Basic's fee every 30 days and the default cap of $10,000.00.
    at_shopify = shop.subscription(int(app.gid.rsplit("/", 1)[1]))
    assert app.recurring_amount_minor > 0 and app.capped_amount_minor == 1_000_000
    assert "per 30 days" in app.usage_terms and len(app.usage_terms) <= 500
    assert at_shopify["status"] == "PENDING"
    # The token: stored encrypted, readable by the adapter, never in an answer or a log.
    stored = ShopifyShop.objects.get(account=account)
    assert TOKEN not in stored.access_token_encrypted and stored.access_token == TOKEN
    assert TOKEN not in response.content.decode()
    assert TOKEN not in partner_api.get("/api/v1/accounts/bloom").content.decode()
    assert TOKEN not in caplog.text


def test_a_card_account_says_its_channel_and_has_no_shop(partner_api, catalog):
    body = shopify_account(billing_channel="stripe", shopify=None)
    body.pop("shopify")
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["billing_channel"] == "stripe" and response.json()["shopify"] is None
    assert response.json()["subscription"]["status"] == "active"


def test_a_card_account_is_not_sold_the_30_day_cycle(partner_api, catalog):
    """Every 30 days is Shopify's cycle: a card account is billed by the month or the year."""
    body = shopify_account(billing_channel="stripe", interval="30d")
    body.pop("shopify")
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 400, response.json()
    assert "interval" in response.json()["error"]["details"]["fields"]
    assert not Account.objects.filter(slug="bloom").exists()


@pytest.mark.parametrize(
    ("shopify", "field"),
    [
        ({"shop_domain": "bloom.example.com", "access_token": TOKEN}, "shop_domain"),
        ({"shop_domain": "Bloom Shop.myshopify.com", "access_token": TOKEN}, "shop_domain"),
        ({"shop_domain": SHOP, "access_token": "   "}, "access_token"),
        ({"shop_domain": SHOP}, "access_token"),
    ],
)
def test_a_bad_shop_is_a_400_naming_the_field(partner_api, catalog, shopify, field):
    response = partner_api.post("/api/v1/accounts", shopify_account(shopify=shopify), format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["details"]["fields"]["shopify"]
    assert TOKEN not in response.content.decode()
    assert not Account.objects.filter(slug="bloom").exists()


def test_the_shopify_channel_without_a_shop_is_refused(partner_api, catalog):
    body = shopify_account()
    body.pop("shopify")
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 400
    assert "shopify" in response.json()["error"]["details"]["fields"]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"interval": "year"}, "Annual billing is not available when you pay through Shopify"),
        ({"plan": "professional"}, "is not available when you pay through Shopify"),
    ],
)
def test_annual_and_editions_are_refused_on_shopify(partner_api, shop, overrides, words):
    response = partner_api.post("/api/v1/accounts", shopify_account(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert words in response.json()["error"]["message"]
    assert not Account.objects.filter(slug="bloom").exists()


def test_a_token_shopify_refuses_leaves_no_account(partner_api, shop):
    body = shopify_account(shopify={"shop_domain": SHOP, "access_token": "shpat_wrong"})
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 400, response.json()
    assert "access_token" in str(response.json()["error"]["details"])
    assert not Account.objects.filter(slug="bloom").exists()
    assert not ShopifyShop.objects.exists()


def test_a_shop_pays_for_one_account_only(partner_api, shop):
    assert partner_api.post("/api/v1/accounts", shopify_account(), format="json").status_code == 201
    again = partner_api.post("/api/v1/accounts", shopify_account(slug="bloom2"), format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "shop_taken"


def test_admin_creates_a_shopify_account_with_a_write_only_token(admin_client, catalog):
    form = {
        "slug": "adminshop",
        "name": "Admin Shop",
        "billing_email": "a@shop.example",
        "currency": "USD",
        "billing_channel": "shopify",
        "status": "active",
        "tax_id_status": "unchecked",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "stores-TOTAL_FORMS": "0",
        "stores-INITIAL_FORMS": "0",
        "shopify_shop-TOTAL_FORMS": "1",
        "shopify_shop-INITIAL_FORMS": "0",
        "shopify_shop-0-shop_domain": "admin-shop.myshopify.com",
        "shopify_shop-0-access_token": TOKEN,
        "shopify_shop-0-installed_at_0": "2026-11-01",
        "shopify_shop-0-installed_at_1": "10:00:00",
    }
    response = admin_client.post("/admin/accounts/account/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    account = Account.objects.get(slug="adminshop")
    assert account.billing_channel == BillingChannel.SHOPIFY
    assert account.shopify_shop.access_token == TOKEN
    page = admin_client.get(f"/admin/accounts/account/{account.pk}/change/").content.decode()
    assert "admin-shop.myshopify.com" in page
    assert TOKEN not in page and account.shopify_shop.access_token_encrypted not in page
    # The channel is read-only once the account exists: an operator moves it by command.
    assert 'name="billing_channel"' not in page


def test_admin_refuses_a_shop_that_is_not_a_myshopify_domain(admin_client, catalog):
    form = {
        "slug": "adminshop",
        "name": "Admin Shop",
        "billing_email": "a@shop.example",
        "currency": "USD",
        "billing_channel": "shopify",
        "status": "active",
        "tax_id_status": "unchecked",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "stores-TOTAL_FORMS": "0",
        "stores-INITIAL_FORMS": "0",
        "shopify_shop-TOTAL_FORMS": "1",
        "shopify_shop-INITIAL_FORMS": "0",
        "shopify_shop-0-shop_domain": "shop.example.com",
        "shopify_shop-0-access_token": TOKEN,
        "shopify_shop-0-installed_at_0": "2026-11-01",
        "shopify_shop-0-installed_at_1": "10:00:00",
    }
    response = admin_client.post("/admin/accounts/account/add/", form)
    assert response.status_code == 200
    assert "my-store.myshopify.com" in response.content.decode()
    assert not Account.objects.filter(slug="adminshop").exists()


def test_card_actions_are_refused_on_the_shopify_channel_in_plain_words(partner_api, shop):
    assert partner_api.post("/api/v1/accounts", shopify_account(), format="json").status_code == 201
    response = partner_api.put(
        "/api/v1/accounts/bloom/payment-method",
        {"stripe_payment_method": "pm_card_visa"},
        format="json",
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "pays_through_shopify"
    assert error["message"].startswith("This account pays through Shopify: there is no card to")


def test_P6_a_partner_change_answers_202_with_shopifys_approval_link(partner_api, shop):
    assert partner_api.post("/api/v1/accounts", shopify_account(), format="json").status_code == 201
    account = Account.objects.get(slug="bloom")
    before = sent(shop)
    shop.approve(ShopifySubscription.objects.get(account=account).confirmation_url)
    deliver(shop, after=before)
    assert partner_api.get("/api/v1/accounts/bloom").json()["subscription"]["interval"] == "30d"
    response = partner_api.post(
        "/api/v1/accounts/bloom/subscription/changes", {"plan": "pro"}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()["shopify"]
    assert body["status"] == "PENDING" and body["replacement_behavior"] == "APPLY_IMMEDIATELY"
    assert body["confirmation_url"].startswith(shop.url)
    # Nothing changed before the merchant approves.
    assert partner_api.get("/api/v1/accounts/bloom").json()["subscription"]["plan"] == "basic"
