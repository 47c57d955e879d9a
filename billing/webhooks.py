"""Stripe webhooks: verified on the raw body, stored once per event id, processed by a task.

Processing asks Stripe for the payment intent's (the refund's, the dispute's) state now instead
of trusting the event's copy, so duplicated, late or out-of-order deliveries all converge to the
same state.
"""

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from retries import Table

from . import disputes, gateway, payments, refunds
from .models import StripeEvent

logger = logging.getLogger(__name__)

# Deliveries signed longer ago than this, or this far in the future, are refused.
TOLERANCE_SECONDS = 300
# Processing that raised is tried again after these waits (the last one repeats), by the
# collection sweep: a delivery is never lost because its first processing failed.
RETRY_AFTER = Table(
    (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
)


class InvalidWebhook(ValueError):
    pass


def _signed_at(signature: str) -> int:
    for part in signature.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t" and value.strip().isdigit():
            return int(value)
    raise InvalidWebhook("The Stripe-Signature header has no timestamp.")


def webhook_receive(*, payload: bytes, signature: str) -> tuple[StripeEvent, bool]:
    """Verify and store a delivery, once per Stripe event id. Returns the event and whether it
    still needs processing (a redelivery of an unprocessed event does: it is queued again)."""
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
    if not isinstance(event.get("id"), str) or not event["id"] or len(event["id"]) > 64:
        raise InvalidWebhook("The event has no valid id.")
    stored, _ = StripeEvent.objects.get_or_create(
        stripe_id=event["id"],
        defaults={
            "type": str(event.get("type", ""))[:80],
            "payload": event,
            "received_at": timezone.now(),
        },
    )
    return stored, stored.processed_at is None


def stripe_event_process(*, stripe_event_id: str) -> bool:
    """Apply one stored event; a processed event is not processed again. Processing that
    raises is recorded and scheduled again with backoff."""
    event = StripeEvent.objects.filter(stripe_id=stripe_event_id, processed_at__isnull=True).first()
    if event is None:
        return False
    try:
        _apply(event)
    except Exception as exc:
        logger.exception("webhook %s failed; it will be retried", stripe_event_id)
        attempts = event.attempts + 1
        StripeEvent.objects.filter(pk=event.pk).update(
            attempts=F("attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            next_attempt_at=timezone.now() + RETRY_AFTER.wait(attempts),
        )
        return False
    StripeEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(
        processed_at=timezone.now(), last_error=""
    )
    return True


# Events whose object is a refund: processed by asking Stripe for the refund as it is now.
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")


# Events whose object is a dispute: processed by asking Stripe for the dispute as it is now.
DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)


def _apply(event: StripeEvent) -> None:
    if event.type in DISPUTE_EVENTS:
        dispute = (event.payload.get("data") or {}).get("object") or {}
        if isinstance(dispute, dict) and isinstance(dispute.get("id"), str):
            disputes.dispute_changed(stripe_dispute=dispute["id"])
    elif event.type in REFUND_EVENTS:
        refund = (event.payload.get("data") or {}).get("object") or {}
        if isinstance(refund, dict) and isinstance(refund.get("id"), str):
            metadata = refund.get("metadata")
            if not isinstance(metadata, dict):
                metadata = {}
            refunds.refund_changed(
                stripe_refund=refund["id"], refund_row=str(metadata.get("refund", ""))
            )
    elif event.type.startswith("payment_intent."):
        intent = (event.payload.get("data") or {}).get("object") or {}
        if isinstance(intent, dict) and isinstance(intent.get("id"), str):
            metadata = intent.get("metadata")
            if not isinstance(metadata, dict):
                metadata = {}
            payments.payment_intent_changed(
                payment_intent=intent["id"], attempt_key=str(metadata.get("attempt", ""))
            )


def stripe_events_retry(*, as_of: datetime | None = None) -> int:
    """Process again the stored events whose processing failed (or never ran: the broker
    lost the task) and whose wait is over."""
    as_of = as_of or timezone.now()
    waiting = StripeEvent.objects.filter(processed_at__isnull=True).filter(
        next_attempt_at__lte=as_of
    ) | StripeEvent.objects.filter(
        processed_at__isnull=True,
        next_attempt_at__isnull=True,
        received_at__lte=as_of - RETRY_AFTER.wait(1),
    )
    done = 0
    for stripe_id in waiting.values_list("stripe_id", flat=True)[:500]:
        done += stripe_event_process(stripe_event_id=stripe_id)
    return done
