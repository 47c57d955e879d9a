"""Stripe webhooks: verified on the raw body, stored once per event id, processed by a task.

Processing asks Stripe for the payment intent's state now instead of trusting the event's copy,
so duplicated, late or out-of-order deliveries all converge to the same state.
"""

import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import gateway, payments
from .models import StripeEvent

# Deliveries signed longer ago than this, or this far in the future, are refused.
TOLERANCE_SECONDS = 300


class InvalidWebhook(ValueError):
    pass


def _signed_at(signature: str) -> int:
    for part in signature.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t" and value.strip().isdigit():
            return int(value)
    raise InvalidWebhook("The Stripe-Signature header has no timestamp.")


def webhook_receive(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify and store a delivery; queue its processing once per Stripe event id."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise InvalidWebhook("Webhooks are not configured (STRIPE_WEBHOOK_SECRET).")
    if _signed_at(signature) > time.time() + TOLERANCE_SECONDS:
        raise InvalidWebhook("The signature's timestamp is in the future.")
    try:
        event = gateway.webhook_event(
            payload=payload, signature=signature, secret=secret, tolerance=TOLERANCE_SECONDS
        )
    except ValueError as exc:
        raise InvalidWebhook(str(exc)) from exc
    stored, created = StripeEvent.objects.get_or_create(
        stripe_id=event["id"],
        defaults={"type": event.get("type", ""), "payload": event, "received_at": timezone.now()},
    )
    if created:
        from .tasks import payment_process_webhook

        transaction.on_commit(lambda: payment_process_webhook.delay(stored.stripe_id))
    return stored


def stripe_event_process(*, stripe_event_id: str) -> bool:
    """Apply one stored event; a processed event is not processed again."""
    event = StripeEvent.objects.filter(stripe_id=stripe_event_id, processed_at__isnull=True).first()
    if event is None:
        return False
    if event.type.startswith("payment_intent."):
        intent = (event.payload.get("data") or {}).get("object") or {}
        if intent.get("id"):
            payments.payment_intent_changed(
                payment_intent=intent["id"],
                attempt_key=(intent.get("metadata") or {}).get("attempt", ""),
            )
    StripeEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(
        processed_at=timezone.now()
    )
    return True
