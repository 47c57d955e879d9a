"""Shopify's webhooks: verified on the raw body (X-Shopify-Hmac-Sha256), stored once per
X-Shopify-Webhook-Id before anything is done, then processed; processing that fails is retried
with backoff by the collection sweep, like Stripe's events (billing.webhooks).

A webhook is a hint, not the truth: for an app subscription we ask Shopify for its state now
(when the shop's token still works) and apply that, so duplicated, late or out-of-order
deliveries converge to what Shopify says."""

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import ShopifyShop
from plans import periods
from plans.money import format_money, to_minor
from retries import Table

from . import notifications, shopify_billing, shopify_gateway
from .models import ShopifySubscription, ShopifyWebhook

logger = logging.getLogger(__name__)

# The same waits as Stripe's events: the last one repeats, a delivery is never dropped.
RETRY_AFTER = Table(
    (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
)
SUBSCRIPTION_UPDATE = "app_subscriptions/update"
APPROACHING_CAP = "app_subscriptions/approaching_capped_amount"
UNINSTALLED = "app/uninstalled"


class InvalidShopifyWebhook(ValueError):
    """Not signed with our app's secret (or not a webhook at all): refused, nothing stored."""


def shopify_webhook_receive(*, body: bytes, headers) -> tuple[ShopifyWebhook, bool]:
    """Verify and store one delivery, once per webhook id. Returns the row and whether it
    still needs processing (a repeat of a processed one does not)."""
    signature = headers.get("X-Shopify-Hmac-Sha256", "")
    if not shopify_gateway.webhook_verify(body=body, hmac_header=signature):
        raise InvalidShopifyWebhook("The webhook's signature does not match.")
    webhook_id = (headers.get("X-Shopify-Webhook-Id") or "").strip()
    if not webhook_id or len(webhook_id) > 120:
        raise InvalidShopifyWebhook("The webhook has no valid X-Shopify-Webhook-Id.")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidShopifyWebhook("The webhook's body is not JSON.") from exc
    if not isinstance(payload, dict):
        raise InvalidShopifyWebhook("The webhook's body is not a JSON object.")
    defaults = {
        "topic": (headers.get("X-Shopify-Topic") or "")[:80],
        "shop_domain": (headers.get("X-Shopify-Shop-Domain") or "").lower()[:253],
        "payload": payload,
        "received_at": timezone.now(),
    }
    try:
        with transaction.atomic():
            row, _ = ShopifyWebhook.objects.get_or_create(webhook_id=webhook_id, defaults=defaults)
    except IntegrityError:  # the same delivery twice at once: the other stored it
        row = ShopifyWebhook.objects.get(webhook_id=webhook_id)
    return row, row.processed_at is None


def shopify_webhook_process(*, webhook_id: str) -> bool:
    """Apply one stored webhook; a processed one is not applied again. Processing that raises
    is recorded and scheduled again with backoff."""
    row = ShopifyWebhook.objects.filter(webhook_id=webhook_id, processed_at__isnull=True).first()
    if row is None:
        return False
    try:
        _apply(row)
    except Exception as exc:
        logger.exception(
            "Shopify webhook %s (%s) failed; it will be retried", webhook_id, row.topic
        )
        attempts = row.attempts + 1
        ShopifyWebhook.objects.filter(pk=row.pk).update(
            attempts=F("attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            next_attempt_at=timezone.now() + RETRY_AFTER.wait(attempts),
        )
        return False
    ShopifyWebhook.objects.filter(pk=row.pk, processed_at__isnull=True).update(
        processed_at=timezone.now(), last_error=""
    )
    return True


def shopify_webhooks_retry(*, as_of: datetime | None = None) -> int:
    """Process again the stored webhooks whose processing failed (or never ran: the task was
    lost) and whose wait is over. Returns how many were processed now."""
    as_of = as_of or timezone.now()
    waiting = ShopifyWebhook.objects.filter(processed_at__isnull=True).filter(
        Q(next_attempt_at__lte=as_of)
        | Q(next_attempt_at__isnull=True, received_at__lte=as_of - RETRY_AFTER.wait(1))
    )
    done = 0
    for webhook_id in waiting.order_by("received_at").values_list("webhook_id", flat=True)[:500]:
        done += shopify_webhook_process(webhook_id=webhook_id)
    return done


# --- the topics -----------------------------------------------------------------------------


def _apply(row: ShopifyWebhook) -> None:
    at = row.received_at
    shop = ShopifyShop.objects.select_related("account").filter(shop_domain=row.shop_domain).first()
    if row.topic == UNINSTALLED:
        domain = str(row.payload.get("myshopify_domain") or row.shop_domain).lower()
        if shopify_billing.shopify_uninstalled(shop_domain=domain, at=at) is None:
            logger.warning("app/uninstalled from %s, a shop no account pays through", domain)
        return
    if row.topic not in (SUBSCRIPTION_UPDATE, APPROACHING_CAP):
        logger.info("Shopify webhook topic %s is not one we act on", row.topic)
        return
    data = row.payload.get("app_subscription")
    gid = data.get("admin_graphql_api_id") if isinstance(data, dict) else None
    subscription = ShopifySubscription.objects.select_related("account").filter(gid=gid).first()
    if shop is None or subscription is None or subscription.account_id != shop.account_id:
        # Answered 200 and kept: Shopify would otherwise deliver it again for days.
        logger.warning(
            "Shopify webhook %s for %s (%s): no such shop or subscription here",
            row.topic,
            row.shop_domain,
            gid,
        )
        return
    assert isinstance(data, dict)
    if row.topic == SUBSCRIPTION_UPDATE:
        _subscription_update(shop, subscription, data, at)
    else:
        _approaching_cap(subscription, data, at)


def _money(value, currency: str) -> int | None:
    try:
        return to_minor(Decimal(str(value)), currency)
    except (InvalidOperation, ValueError, TypeError):
        return None


def _subscription_update(shop: ShopifyShop, row: ShopifySubscription, data: dict, at) -> None:
    """Status and cap changed at Shopify: read it again from Shopify and apply that. Without
    a working token (uninstalled) the payload's own status and cap are applied."""
    state = None
    if shop.uninstalled_at is None:
        try:
            state = shopify_gateway.subscription_get(shop=shop, gid=row.gid)
        except shopify_gateway.ShopifyAuthError:
            state = None  # the token was revoked: the payload is all there is
    if state is None:
        cap = _money(data.get("capped_amount"), row.currency)
        state = shopify_gateway.SubscriptionState(
            gid=row.gid,
            name=str(data.get("name") or row.name),
            status=str(data.get("status") or row.status).upper(),
            created_at=row.created_at,
            current_period_end=row.current_period_end,
            currency=row.currency,
            recurring_line_gid=row.recurring_line_gid,
            recurring_minor=row.recurring_amount_minor,
            usage_line_gid=row.usage_line_gid,
            capped_minor=cap if cap is not None else row.capped_amount_minor,
            balance_used_minor=row.balance_used_minor,
            terms=row.usage_terms,
        )
    shopify_billing.shopify_sync(shopify_subscription=row, state=state, at=at)


def _approaching_cap(row: ShopifySubscription, data: dict, at) -> None:
    """Shopify says 90 % of the cap is used this interval: keep it for the page and the
    console, and tell the merchant once per interval."""
    balance = _money(data.get("balance_used"), row.currency)
    cap = _money(data.get("capped_amount"), row.currency)
    interval_start = (
        row.current_period_end - periods.THIRTY_DAYS if row.current_period_end else None
    )
    with transaction.atomic():
        row = (
            ShopifySubscription.objects.select_for_update().select_related("account").get(pk=row.pk)
        )
        told = row.approaching_cap_at is not None and (
            interval_start is None or row.approaching_cap_at >= interval_start
        )
        row.approaching_cap_at = at
        if balance is not None:
            row.balance_used_minor = balance
        if cap is not None:
            row.capped_amount_minor = cap
        row.updated_at = at
        row.save(
            update_fields=[
                "approaching_cap_at",
                "balance_used_minor",
                "capped_amount_minor",
                "updated_at",
            ]
        )
        if told:
            return
        notifications.send(
            "shopify_cap_approaching",
            row.account,
            also=notifications.billing_managers(row.account),
            shopify_subscription=row,
            balance=format_money(row.balance_used_minor, row.currency),
            cap=format_money(row.capped_amount_minor, row.currency),
        )
