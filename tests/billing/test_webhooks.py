"""Stripe webhooks: verified on the raw body, stored once, converging whatever the order."""

import hashlib
import hmac
import json
import random
import time
from datetime import UTC, datetime

import pytest
import time_machine

from billing.models import Invoice, PaymentAttempt, StripeEvent
from billing.run import run_billing
from tests.billing.test_payments import (
    THREE_DS,
    not_charged_by_run_billing,
    sent_on_commit,
    use_card,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SECRET = "whsec_test_secret"


def signed(payload: bytes, *, at: int | None = None, secret: str = SECRET) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def deliver(client, event: dict, **signing):
    payload = json.dumps(event).encode()
    return client.generic(
        "POST",
        "/stripe/webhooks/",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signed(payload, **signing),
    )


def intent_event(event_id: str, kind: str, attempt: PaymentAttempt) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "data": {
            "object": {
                "id": attempt.stripe_payment_intent,
                "object": "payment_intent",
                "metadata": {"attempt": attempt.idempotency_key},
            }
        },
    }


@pytest.fixture
def waiting(make_account, stripe_standin, partner_api):
    """An invoice waiting for 3-D Secure, that the customer then completes at the bank."""
    with time_machine.travel(T0, tick=False):
        make_account(slug="shop", plan="basic")
    use_card(partner_api, stripe_standin, THREE_DS)
    with not_charged_by_run_billing():
        run_billing(as_of=T0)
    from billing import payments

    for invoice_id in Invoice.objects.values_list("pk", flat=True):
        payments.invoice_collect(invoice_id=invoice_id)
    attempt = PaymentAttempt.objects.get()
    assert attempt.invoice.status == "requires_confirmation"
    stripe_standin.authenticate(attempt.stripe_payment_intent, success=True)
    return attempt


def test_F5_the_same_webhooks_three_times_shuffled_converge_to_paid(waiting, client):
    events = [
        intent_event("evt_action", "payment_intent.requires_action", waiting),
        intent_event("evt_ok", "payment_intent.succeeded", waiting),
        intent_event("evt_failed_late", "payment_intent.payment_failed", waiting),
    ]
    deliveries = events * 3
    random.Random(4).shuffle(deliveries)
    with sent_on_commit():
        answers = [deliver(client, event).status_code for event in deliveries]
    assert answers == [200] * 9
    assert StripeEvent.objects.count() == 3  # stored once per Stripe event id
    assert StripeEvent.objects.filter(processed_at__isnull=True).count() == 0
    invoice = Invoice.objects.get()
    assert invoice.status == "paid"  # and a paid invoice never moves back
    assert list(invoice.status_changes.values_list("to_status", flat=True)) == [
        "open",
        "requires_confirmation",
        "paid",
    ]


@pytest.mark.parametrize(
    "signing",
    [
        {"secret": "whsec_forged"},
        {"at": int(time.time()) - 3600},  # stale: a replay
        {"at": int(time.time()) + 3600},  # from the future
    ],
)
def test_a_forged_stale_or_future_signature_is_400_and_stores_nothing(
    db, stripe_standin, client, signing
):
    response = deliver(
        client, {"id": "evt_x", "type": "payment_intent.succeeded", "data": {}}, **signing
    )
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_a_missing_signature_is_400(db, stripe_standin, client):
    response = client.post("/stripe/webhooks/", "{}", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type": "payment_intent.succeeded", "data": {}}',  # no id
        b'{"id": null, "type": "payment_intent.succeeded"}',
        b'{"id": 5, "type": "payment_intent.succeeded"}',
        b'{"id": ""}',
        b"[1, 2]",
        b'"evt_x"',
        b"null",
        b'{"id": "evt_' + b"x" * 80 + b'"}',
    ],
)
def test_a_validly_signed_delivery_without_a_usable_id_is_400_and_stores_nothing(
    db, stripe_standin, client, payload
):
    response = client.generic(
        "POST",
        "/stripe/webhooks/",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signed(payload),
    )
    assert response.status_code == 400, response.content
    assert not StripeEvent.objects.exists()
