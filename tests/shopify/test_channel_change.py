"""An operator moves an account to the other channel (docs/shopify.md, "Changing channel"):
refused while an invoice is unpaid (listed), audited with the operator's reason; to Stripe,
Shopify stops billing and the next charge asks for a card; to Shopify, the shop is set with a
token read from the environment."""

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from accounts.models import BillingChannel
from audit.models import AuditEntry
from billing.models import Invoice, InvoiceStatus, ShopifyStatus
from billing.run import collect_due
from plans.models import ScheduledChange, Subscription

from .flows import TOKEN, active_account, newest, number


@pytest.fixture
def stand_in(shopify_standin, catalog):
    return shopify_standin


def move(slug: str, to: str, *extra: str):
    call_command(
        "billing_channel_change", slug, "--to", to, "--reason", "merchant left Shopify", *extra
    )


def test_moving_is_refused_while_an_invoice_is_unpaid_and_lists_it(stand_in):
    account = active_account(stand_in)
    unpaid = Invoice.objects.get(account=account)
    unpaid.status = InvoiceStatus.OPEN
    unpaid.save(update_fields=["status"])
    with pytest.raises(CommandError, match=f"Settle the unpaid invoices first: {unpaid.number}"):
        move(account.slug, "stripe")
    account.refresh_from_db()
    assert account.billing_channel == BillingChannel.SHOPIFY


def test_to_stripe_stops_shopify_billing_keeps_ours_and_is_audited(stand_in):
    account = active_account(stand_in)
    collect_due()  # the start invoice: billed through Shopify (settled)
    assert not Invoice.objects.filter(account=account).exclude(status=InvoiceStatus.PAID)
    row = newest(account)
    move(account.slug, "stripe")
    account.refresh_from_db()
    assert account.billing_channel == BillingChannel.STRIPE
    # Shopify no longer bills the app subscription...
    assert stand_in.subscription(number(row))["status"] == "CANCELLED"
    assert newest(account).status == ShopifyStatus.CANCELLED
    # ...while our subscription goes on, by card from its next charge.
    subscription = Subscription.objects.get(account=account, ended_at__isnull=True)
    assert not subscription.scheduled_changes.filter(
        cancel=True, status=ScheduledChange.Status.SCHEDULED
    ).exists()
    entry = AuditEntry.objects.get(action="account.billing_channel")
    assert (entry.before, entry.after, entry.reason) == (
        "shopify",
        "stripe",
        "merchant left Shopify",
    )
    assert entry.source == "operator"


def test_to_shopify_sets_the_shop_from_an_environment_variable(make_account, stand_in, monkeypatch):
    account = make_account(slug="card")
    # Its card subscription ended (canceled at its cycle's end).
    Subscription.objects.filter(account=account).update(
        status=Subscription.Status.CANCELED, ended_at=F("current_period_end")
    )
    monkeypatch.setenv("SHOP_TOKEN", TOKEN)
    move(
        "card", "shopify", "--shop-domain", "Card.myshopify.com", "--access-token-env", "SHOP_TOKEN"
    )
    account.refresh_from_db()
    assert account.billing_channel == BillingChannel.SHOPIFY
    assert account.shopify_shop.shop_domain == "card.myshopify.com"
    assert account.shopify_shop.access_token == TOKEN
    assert TOKEN not in str(AuditEntry.objects.filter(action="account.billing_channel").values())


def test_to_shopify_is_refused_while_a_card_subscription_is_live(
    make_account, stand_in, monkeypatch
):
    make_account(slug="card")
    monkeypatch.setenv("SHOP_TOKEN", TOKEN)
    with pytest.raises(CommandError, match="The card subscription is live"):
        move(
            "card",
            "shopify",
            "--shop-domain",
            "card.myshopify.com",
            "--access-token-env",
            "SHOP_TOKEN",
        )
