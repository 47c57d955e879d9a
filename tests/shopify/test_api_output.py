"""The partner API on the Shopify channel: accounts carry `billing_channel` and Shopify's
figures (status, cap, balance used, held amount, approval links, the interval's end) in minor
units like the rest of the API; subscriptions carry the channel; invoices carry their usage
records (P8: a line over the cap is a part posted and a part held)."""

import time_machine

from tests.shopify.surfaces import (
    CAP,
    CLOSE,
    HELD,
    LATER,
    POSTED,
    T0,
    close_over_the_cap,
    make_shopify,
)


def usd(amount: int) -> dict:
    return {"amount": amount, "currency": "USD"}


def test_account_carries_the_channel_and_shopify_figures(
    partner_api, make_account, shopify_standin
):
    account, app = make_shopify(make_account, shopify_standin)
    close_over_the_cap(account, app)
    app.cap_confirmation_url = "https://shop.myshopify.com/admin/charges/11/confirm_update?x=1"
    app.save()
    with time_machine.travel(LATER, tick=False):
        body = partner_api.get("/api/v1/accounts/shop").json()
        listed = partner_api.get("/api/v1/accounts").json()
    assert body["billing_channel"] == "shopify"
    assert body["subscription"]["billing_channel"] == "shopify"
    assert body["subscription"]["interval"] == "30d"
    assert body["shopify"] == {
        "shop_domain": "shop.myshopify.com",
        "status": "ACTIVE",
        "capped_amount": usd(CAP),
        "balance_used": usd(POSTED),
        "held_amount": usd(HELD),
        "currency": "USD",
        "confirmation_url": None,
        "cap_confirmation_url": "https://shop.myshopify.com/admin/charges/11/confirm_update?x=1",
        "current_period_end": (CLOSE + (CLOSE - T0)).isoformat().replace("+00:00", "Z"),
    }
    assert [a["shopify"] for a in listed["results"] if a["slug"] == "shop"] == [body["shopify"]]
    assert "access_token" not in str(body) and "shpat_" not in str(body)


def test_invoices_carry_their_usage_records(partner_api, make_account, shopify_standin):
    account, app = make_shopify(make_account, shopify_standin)
    invoice = close_over_the_cap(account, app)
    with time_machine.travel(LATER, tick=False):
        detail = partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()
        page = partner_api.get("/api/v1/accounts/shop/invoices").json()
    records = detail["shopify_usage_records"]
    assert [(r["amount"], r["status"], r["shopify_id"]) for r in records] == [
        (usd(POSTED), "posted", "gid://shopify/AppUsageRecord/4021"),
        (usd(HELD), "held", None),
    ]
    listed = {i["id"]: i for i in page["results"]}
    assert listed[invoice.pk]["shopify_usage_records"] == records
    fees_only = [i for i in page["results"] if i["id"] != invoice.pk]
    assert fees_only and all(i["shopify_usage_records"] == [] for i in fees_only)


def test_a_card_account_says_stripe_and_no_shopify(partner_api, account):
    body = partner_api.get(f"/api/v1/accounts/{account.slug}").json()
    assert body["billing_channel"] == "stripe" and body["shopify"] is None
    assert body["subscription"]["billing_channel"] == "stripe"


def test_partner_webhooks_carry_the_channel_and_shopify_figures(partner, shopify_standin, catalog):
    """P6 through Shopify: the merchant approves the upgrade; the partner's subscription.changed
    says the channel and what Shopify says of the new app subscription."""
    from billing import shopify_billing
    from billing.changes import ChangeRequest
    from outbox import services as outbox
    from outbox.models import Event
    from tests.shopify import flows

    account = flows.active_account(shopify_standin, plan="basic")
    account.partner = partner
    account.save(update_fields=["partner"])
    outbox.endpoint_create(partner=partner, url="https://hooks.example/in")
    row = shopify_billing.shopify_change(account=account, request=ChangeRequest(plan="pro"))
    flows.approve_and_deliver(shopify_standin, row)
    row.refresh_from_db()
    changed = Event.objects.get(type="subscription.changed")
    assert changed.data["subscription"]["plan"] == "pro"
    assert changed.data["subscription"]["billing_channel"] == "shopify"
    figures = changed.data["shopify"]
    assert figures["shop_domain"] == "bloom.myshopify.com" and figures["status"] == "ACTIVE"
    assert figures["capped_amount"] == usd(row.capped_amount_minor) and figures["currency"] == "USD"
    assert figures["held_amount"] == usd(0)
    assert figures["current_period_end"] == row.current_period_end.isoformat()
