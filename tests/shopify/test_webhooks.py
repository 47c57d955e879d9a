"""Shopify's webhooks at /webhooks/shopify/ (issue 24, item 2): verified on the raw body
(X-Shopify-Hmac-Sha256), stored once per X-Shopify-Webhook-Id before processing, retried with
backoff when processing fails, and each topic doing what docs/shopify.md says."""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.test import Client, TestCase
from django.utils import timezone

from billing import shopify_webhooks
from billing.models import ShopifyStatus, ShopifyWebhook
from billing.run import collect_due
from plans.models import ScheduledChange, Subscription

from .flows import active_account, deliver, newest, number, open_account, sent, shop_domain


@pytest.fixture
def stand_in(shopify_standin, catalog):
    return shopify_standin


def signed(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def post(body: bytes, *, signature: str, topic: str, shop: str, webhook_id: str | None = None):
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
    }
    with TestCase.captureOnCommitCallbacks(execute=True):
        return Client().post(
            "/webhooks/shopify/", data=body, content_type="application/json", headers=headers
        )


def update_body(row, **overrides) -> bytes:
    payload = {
        "app_subscription": {
            "admin_graphql_api_id": row.gid,
            "name": row.name,
            "status": "ACTIVE",
            "capped_amount": "10000.00",
            "currency": "USD",
        }
        | overrides
    }
    return json.dumps(payload).encode()


def test_a_signed_webhook_is_stored_and_applied(stand_in):
    account = open_account(stand_in)
    before = sent(stand_in)
    stand_in.approve(newest(account).confirmation_url)
    assert deliver(stand_in, after=before) == [200]
    stored = ShopifyWebhook.objects.get()
    assert stored.topic == "app_subscriptions/update" and stored.processed_at is not None
    assert stored.shop_domain == shop_domain("bloom")
    assert Subscription.objects.filter(account=account, ended_at__isnull=True).exists()


@pytest.mark.parametrize("signature", ["", "forged", "c2lnbmVkIHdpdGggYW5vdGhlciBzZWNyZXQ="])
def test_a_forged_or_unsigned_webhook_is_refused_401_and_nothing_is_stored(stand_in, signature):
    account = open_account(stand_in)
    row = newest(account)
    response = post(
        update_body(row), signature=signature, topic="app_subscriptions/update", shop="bloom"
    )
    assert response.status_code == 401
    assert not ShopifyWebhook.objects.exists()
    assert newest(account).status == ShopifyStatus.PENDING
    assert not Subscription.objects.filter(account=account).exists()


def test_a_body_changed_after_signing_is_refused(stand_in, settings):
    account = open_account(stand_in)
    body = update_body(newest(account))
    signature = signed(body, settings.SHOPIFY_API_SECRET)
    tampered = body.replace(b"10000.00", b"99999.00")
    assert post(tampered, signature=signature, topic="x", shop="bloom").status_code == 401
    assert not ShopifyWebhook.objects.exists()


def test_the_same_webhook_id_is_applied_once(stand_in):
    account = active_account(stand_in)
    row = newest(account)
    mail.outbox.clear()
    before = sent(stand_in)
    stand_in.set_status(number(row), "FROZEN")
    # Shopify delivers the same webhook three times.
    assert deliver(stand_in, after=before) + deliver(stand_in, after=before) + deliver(
        stand_in, after=before
    ) == [200, 200, 200]
    assert ShopifyWebhook.objects.filter(topic="app_subscriptions/update").count() == 2
    assert len(mail.outbox) == 1  # one "frozen" email, not three
    subscription = Subscription.objects.get(account=account)
    assert subscription.status_changes.filter(to_status="past_due").count() == 1


def test_processing_that_fails_is_retried_with_backoff_until_it_succeeds(stand_in):
    account = open_account(stand_in)
    before = sent(stand_in)
    stand_in.approve(newest(account).confirmation_url)
    with mock.patch(
        "billing.shopify_billing.shopify_sync", side_effect=RuntimeError("database hiccup")
    ):
        assert deliver(stand_in, after=before) == [200]  # stored, answered: Shopify stops
    stored = ShopifyWebhook.objects.get()
    assert stored.processed_at is None and stored.attempts == 1
    assert "database hiccup" in stored.last_error
    assert stored.next_attempt_at > timezone.now()
    assert not Subscription.objects.filter(account=account).exists()
    # Not before its wait is over; then the collection sweep processes it.
    assert shopify_webhooks.shopify_webhooks_retry(as_of=timezone.now()) == 0
    result = collect_due(as_of=stored.next_attempt_at + timedelta(seconds=1))
    assert result["shopify_webhooks"] == 1
    stored.refresh_from_db()
    assert stored.processed_at is not None and stored.last_error == ""
    assert Subscription.objects.filter(account=account, ended_at__isnull=True).exists()


def test_update_with_a_cap_raised_in_shopifys_settings_is_mirrored(stand_in):
    account = active_account(stand_in)
    row = newest(account)
    before = sent(stand_in)
    with mock.patch("billing.shopify_usage.held_post", return_value=0) as held_post:
        stand_in.raise_cap(number(row), "25000.00")
        assert deliver(stand_in, after=before) == [200]
    row.refresh_from_db()
    assert row.capped_amount_minor == 2_500_000
    # The held usage is posted now that there is room (the usage path's step).
    held_post.assert_called_once()
    assert held_post.call_args.kwargs["account_id"] == account.pk


def test_approaching_the_cap_is_kept_and_the_merchant_told_once_per_interval(stand_in, settings):
    account = active_account(stand_in)
    row = newest(account)
    mail.outbox.clear()
    body = update_body(row, capped_amount="10000.00", balance_used="9100.00")
    signature = signed(body, settings.SHOPIFY_API_SECRET)
    topic = "app_subscriptions/approaching_capped_amount"
    answer = post(body, signature=signature, topic=topic, shop=shop_domain("bloom"))
    assert answer.status_code == 200
    row.refresh_from_db()
    assert row.approaching_cap_at is not None and row.balance_used_minor == 910_000
    (email,) = mail.outbox
    assert "90%" in email.subject and "$9,100.00" in email.body and "$10,000.00" in email.body
    # A second warning in the same interval (another webhook id) sends no second email.
    post(body, signature=signature, topic=topic, shop=shop_domain("bloom"))
    assert len(mail.outbox) == 1


def test_app_uninstalled_ends_ours_at_the_cycles_end(stand_in):
    account = active_account(stand_in)
    before = sent(stand_in)
    stand_in.uninstall(shop_domain("bloom"))
    assert deliver(stand_in, after=before) == [200]
    assert newest(account).status == ShopifyStatus.CANCELLED
    subscription = Subscription.objects.get(account=account)
    assert subscription.scheduled_changes.filter(
        cancel=True, status=ScheduledChange.Status.SCHEDULED
    ).exists()


def test_a_webhook_from_an_unknown_shop_is_answered_200_and_kept(stand_in, settings, caplog):
    body = json.dumps({"id": 9, "myshopify_domain": "nobody.myshopify.com"}).encode()
    signature = signed(body, settings.SHOPIFY_API_SECRET)
    response = post(body, signature=signature, topic="app/uninstalled", shop="nobody.myshopify.com")
    assert response.status_code == 200
    stored = ShopifyWebhook.objects.get()
    assert stored.processed_at is not None
    assert "nobody.myshopify.com" in caplog.text
