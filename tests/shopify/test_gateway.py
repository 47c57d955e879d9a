"""The Shopify adapter against the stand-in: Shopify's answers become our results and errors.

What matters most is how failures are told apart: a refusal (userErrors) changed nothing, while
a 5xx, a timeout or a dropped connection leaves the result unknown, so the money path settles it
by asking Shopify instead of posting something new."""

import base64
import hashlib
import hmac

import pytest
from django.utils import timezone

from accounts.models import Account, ShopifyShop
from billing import shopify_gateway as gateway

pytestmark = pytest.mark.django_db

DOMAIN = "gateway-test.myshopify.com"


@pytest.fixture
def shop(shopify_standin):
    shopify_standin.shop(DOMAIN, "shpat_gateway", "USD")
    account = Account.objects.create(
        slug="gateway-test", name="Gateway test", billing_email="billing@example.com"
    )
    shop = ShopifyShop(account=account, shop_domain=DOMAIN, installed_at=timezone.now())
    shop.set_access_token("shpat_gateway")
    shop.save()
    return shop


def _active(shopify_standin, shop, *, cap_minor=10_000, recurring_minor=6_000):
    created = gateway.subscription_create(
        shop=shop,
        name="Basic plan",
        recurring_minor=recurring_minor,
        usage_cap_minor=cap_minor,
        usage_terms="Billable tickets over 300 per 30 days: $40.00 per 100",
        currency="USD",
        return_url="http://127.0.0.1/billing/gateway-test/shopify/return/",
    )
    shopify_standin.approve(created.confirmation_url)
    return gateway.subscription_get(shop=shop, gid=created.state.gid)


def test_create_is_pending_until_the_merchant_approves(shopify_standin, shop):
    created = gateway.subscription_create(
        shop=shop,
        name="Basic plan",
        recurring_minor=6_000,
        usage_cap_minor=1_000_000,
        usage_terms="Billable tickets over 300 per 30 days: $40.00 per 100",
        currency="USD",
        return_url="http://127.0.0.1/return/",
    )
    assert created.state.status == "PENDING"
    assert created.state.recurring_minor == 6_000
    assert created.state.capped_minor == 1_000_000
    assert created.confirmation_url.startswith(shopify_standin.url)

    shopify_standin.approve(created.confirmation_url)
    state = gateway.subscription_get(shop=shop, gid=created.state.gid)
    assert state.status == "ACTIVE"
    assert state.balance_used_minor == 0
    assert state.current_period_end is not None
    assert [s.gid for s in gateway.active_subscriptions(shop=shop)] == [state.gid]


def test_usage_record_within_the_cap_then_refused_over_it(shopify_standin, shop):
    state = _active(shopify_standin, shop, cap_minor=10_000)
    record = gateway.usage_record_create(
        shop=shop,
        line_gid=state.usage_line_gid,
        amount_minor=8_000,
        currency="USD",
        description="Billable tickets over your allowance: 200 (2 × 100)",
        idempotency_key="usage:2026-000001:line:1:part:1",
    )
    assert record.amount_minor == 8_000
    assert record.gid.startswith("gid://shopify/AppUsageRecord/")
    assert gateway.subscription_get(shop=shop, gid=state.gid).balance_used_minor == 8_000

    with pytest.raises(gateway.ShopifyCapExceeded) as refused:
        gateway.usage_record_create(
            shop=shop,
            line_gid=state.usage_line_gid,
            amount_minor=2_001,
            currency="USD",
            description="More tickets",
            idempotency_key="usage:2026-000001:line:2:part:1",
        )
    assert "Total price exceeds balance remaining" in str(refused.value)
    assert gateway.subscription_get(shop=shop, gid=state.gid).balance_used_minor == 8_000


def test_the_same_key_never_charges_twice(shopify_standin, shop):
    state = _active(shopify_standin, shop)
    arguments = {
        "shop": shop,
        "line_gid": state.usage_line_gid,
        "amount_minor": 4_000,
        "currency": "USD",
        "description": "Billable tickets over your allowance: 100 (1 × 100)",
        "idempotency_key": "usage:2026-000002:line:7:part:1",
    }
    first = gateway.usage_record_create(**arguments)
    again = gateway.usage_record_create(**arguments)
    assert again.gid == first.gid
    assert gateway.subscription_get(shop=shop, gid=state.gid).balance_used_minor == 4_000
    listed = gateway.usage_records(shop=shop, line_gid=state.usage_line_gid)
    assert [(r.idempotency_key, r.amount_minor) for r in listed] == [
        ("usage:2026-000002:line:7:part:1", 4_000)
    ]


def test_a_key_longer_than_shopify_takes_is_refused_before_sending(shopify_standin, shop):
    state = _active(shopify_standin, shop)
    with pytest.raises(ValueError):
        gateway.usage_record_create(
            shop=shop,
            line_gid=state.usage_line_gid,
            amount_minor=100,
            currency="USD",
            description="x",
            idempotency_key="k" * 256,
        )


@pytest.mark.parametrize("mode", ["error", "lose_answer"])
def test_no_answer_is_unknown_not_refused(shopify_standin, shop, mode):
    """A 500 or a dropped connection may have recorded the charge: the caller must ask Shopify
    (ShopifyUnavailable), never treat it as refused and post something else."""
    state = _active(shopify_standin, shop)
    shopify_standin.fault(mode, count=1, operation="appUsageRecordCreate")
    arguments = {
        "shop": shop,
        "line_gid": state.usage_line_gid,
        "amount_minor": 4_000,
        "currency": "USD",
        "description": "Billable tickets over your allowance: 100 (1 × 100)",
        "idempotency_key": f"usage:lost:{mode}",
    }
    with pytest.raises(gateway.ShopifyUnavailable):
        gateway.usage_record_create(**arguments)
    # Sent again with the same key: one record whatever happened the first time.
    gateway.usage_record_create(**arguments)
    records = gateway.usage_records(shop=shop, line_gid=state.usage_line_gid)
    assert [r.idempotency_key for r in records] == [f"usage:lost:{mode}"]
    assert gateway.subscription_get(shop=shop, gid=state.gid).balance_used_minor == 4_000


def test_a_timeout_is_unknown(shopify_standin, shop, settings):
    state = _active(shopify_standin, shop)
    settings.SHOPIFY_TIMEOUT_SECONDS = 1
    shopify_standin.fault("timeout", count=1, operation="appUsageRecordCreate", seconds=2)
    with pytest.raises(gateway.ShopifyUnavailable):
        gateway.usage_record_create(
            shop=shop,
            line_gid=state.usage_line_gid,
            amount_minor=500,
            currency="USD",
            description="x",
            idempotency_key="usage:timeout",
        )


def test_a_revoked_token_is_an_auth_error(shopify_standin, shop):
    shop.set_access_token("shpat_wrong")
    with pytest.raises(gateway.ShopifyAuthError):
        gateway.active_subscriptions(shop=shop)


def test_cap_update_returns_a_link_and_changes_nothing_until_approved(shopify_standin, shop):
    state = _active(shopify_standin, shop, cap_minor=10_000)
    link = gateway.cap_update(
        shop=shop, line_gid=state.usage_line_gid, capped_minor=20_000, currency="USD"
    )
    assert gateway.subscription_get(shop=shop, gid=state.gid).capped_minor == 10_000
    shopify_standin.approve(link)
    assert gateway.subscription_get(shop=shop, gid=state.gid).capped_minor == 20_000


def test_webhook_signature(settings):
    settings.SHOPIFY_API_SECRET = "shpss_test"
    body = b'{"app_subscription": {"status": "ACTIVE"}}'
    good = base64.b64encode(hmac.new(b"shpss_test", body, hashlib.sha256).digest()).decode()
    assert gateway.webhook_verify(body=body, hmac_header=good)
    assert not gateway.webhook_verify(body=body + b" ", hmac_header=good)
    assert not gateway.webhook_verify(body=body, hmac_header="")
    settings.SHOPIFY_API_SECRET = ""
    assert not gateway.webhook_verify(body=body, hmac_header=good)


def test_money_goes_to_shopify_as_exact_decimal_strings():
    assert gateway.money_input(1_000_000, "USD") == {"amount": "10000.00", "currencyCode": "USD"}
    assert gateway.money_input(5, "EUR") == {"amount": "0.05", "currencyCode": "EUR"}
    assert gateway.money_minor({"amount": "12.5", "currencyCode": "USD"}) == 1_250
