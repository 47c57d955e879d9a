"""The operator console on the Shopify channel: the queue filters by channel and lists usage
held over a Shopify cap like a held invoice (P8); the account page shows the channel, the shop,
Shopify's status, the cap, the balance used, what is held and the approval links."""

import time_machine

from billing.models import Invoice
from console import selectors
from tests.console.conftest import operator, ops  # noqa: F401  (fixtures)
from tests.shopify.surfaces import LATER, close_over_the_cap, make_shopify


def test_held_usage_is_in_the_queue_filtered_by_channel(
    ops,  # noqa: F811
    make_account,
    shopify_standin,
):
    account, app = make_shopify(make_account, shopify_standin)
    invoice = close_over_the_cap(account, app)
    queue = selectors.attention_queue(filters={"attention": "held"}, page=1, now=LATER)
    rows = {row.invoice.pk: row for row in queue.object_list}
    assert invoice.pk in rows
    assert "$300.00 held over the Shopify cap" in rows[invoice.pk].needs  # P8, in cents
    on_stripe = selectors.attention_queue(filters={"channel": "stripe"}, page=1, now=LATER)
    assert invoice.pk not in {row.invoice.pk for row in on_stripe.object_list}
    on_shopify = selectors.attention_queue(filters={"channel": "shopify"}, page=1, now=LATER)
    assert invoice.pk in {row.invoice.pk for row in on_shopify.object_list}
    by_domain = selectors.attention_queue(filters={"q": "shop.myshopify.com"}, page=1, now=LATER)
    assert invoice.pk in {row.invoice.pk for row in by_domain.object_list}

    with time_machine.travel(LATER, tick=False):
        html = ops.get("/console/?channel=shopify&attention=held").content.decode()
    assert invoice.number in html and "paid through Shopify" in html
    assert "$300.00 held over the Shopify cap" in html


def test_the_account_page_shows_shopify_state_and_links(ops, make_account, shopify_standin):  # noqa: F811
    account, app = make_shopify(make_account, shopify_standin)
    invoice = close_over_the_cap(account, app)
    app.cap_confirmation_url = "https://shop.myshopify.com/admin/charges/11/confirm_update?x=1"
    app.cap_requested_minor = 2_000_000
    app.save()
    with time_machine.travel(LATER, tick=False):
        html = ops.get(f"/console/accounts/{account.pk}/").content.decode()
        detail = ops.get(f"/console/invoices/{invoice.pk}/").content.decode()
    assert "Paid through Shopify" in html and "shop.myshopify.com" in html
    assert '<span class="badge ok">ACTIVE</span>' in html
    assert "$10,000.00 per 30 days" in html and "raise to $20,000.00 asked" in html
    assert "$500.00 (5 %)" in html  # the posted part, in Shopify's new interval
    assert '<strong class="bad-text">$300.00</strong>' in html
    assert "confirm_update?x=1" in html
    assert "Stripe customer" not in html
    assert "Shopify usage records" in detail and "gid://shopify/AppUsageRecord/4021" in detail
    assert Invoice.objects.get(pk=invoice.pk).status == "open"  # held: not paid yet


def test_an_operator_changes_the_channel_with_a_reason_once_nothing_is_unpaid(
    ops,  # noqa: F811
    make_account,
    shopify_standin,
):
    """The console's "Change billing channel": refused while a statement is unpaid (it says
    which), done when nothing is; the token field is write-only and the audit row names the
    move and the reason."""
    from accounts.form_tokens import TOKEN_FIELD, new_form_token
    from audit.models import AuditEntry

    held, app = make_shopify(make_account, shopify_standin)
    statement = close_over_the_cap(held, app)  # open: part of it is held (P8)
    settled, _ = make_shopify(make_account, shopify_standin, slug="settled")
    form = {"to": "stripe", "reason": "Merchant left the App Store"}
    with time_machine.travel(LATER, tick=False):
        page = ops.get(f"/console/accounts/{held.pk}/channel/").content.decode()
        assert 'type="password"' in page and "Change billing channel" in page
        refused = ops.post(
            f"/console/accounts/{held.pk}/channel/",
            {**form, TOKEN_FIELD: new_form_token()},
            follow=True,
        ).content.decode()
        done = ops.post(
            f"/console/accounts/{settled.pk}/channel/",
            {**form, TOKEN_FIELD: new_form_token()},
            follow=True,
        ).content.decode()
    assert f"Settle the unpaid invoices first: {statement.number}." in refused
    held.refresh_from_db()
    settled.refresh_from_db()
    assert held.billing_channel == "shopify" and settled.billing_channel == "stripe"
    assert "Billing channel: settled now pays by card" in done
    entry = AuditEntry.objects.get(action="operator.channel_change")
    assert entry.before == "shopify" and entry.after == {"billing_channel": "stripe"}
    assert entry.reason == "Merchant left the App Store" and entry.account_id == settled.pk
