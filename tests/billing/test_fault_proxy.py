"""The Stripe fault proxy behaves as Stripe does with idempotency keys, and the adapter turns
every fault whose outcome is unknown into an attempt that is reconciled with the same key,
never re-sent under a new one."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import stripe
import time_machine

from billing import payments
from billing.models import Invoice, PaymentAttempt
from tests.billing.test_money_safety import issued_unpaid
from tests.billing.test_payments import OK
from tests.stripe_proxy import KEY_TTL


def proxied(stripe_standin) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_standin",
        base_addresses={"api": stripe_standin.proxy.url},
        max_network_retries=0,
    )


def create(api, key, amount=1000, card=None):
    return api.v1.payment_intents.create(
        params={"amount": amount, "currency": "usd", "payment_method": card, "confirm": True},
        options={"idempotency_key": key},
    )


def test_same_key_same_body_replays_the_first_answer(stripe_standin):
    api, card = proxied(stripe_standin), stripe_standin.card(OK)
    first, again = create(api, "k1", card=card), create(api, "k1", card=card)
    assert first.id == again.id and len(stripe_standin.intents()) == 1


def test_same_key_other_body_is_an_idempotency_error(stripe_standin):
    api, card = proxied(stripe_standin), stripe_standin.card(OK)
    create(api, "k1", card=card)
    with pytest.raises(stripe.IdempotencyError) as refused:
        create(api, "k1", amount=2000, card=card)
    assert refused.value.http_status == 400
    assert len(stripe_standin.intents()) == 1


def test_same_key_while_the_first_runs_is_a_409(stripe_standin):
    api, card = proxied(stripe_standin), stripe_standin.card(OK)
    stripe_standin.proxy.delay = 0.5
    first = threading.Thread(target=create, args=(api, "k1"), kwargs={"card": card})
    first.start()
    while not stripe_standin.proxy.in_flight:
        threading.Event().wait(0.01)
    with pytest.raises(stripe.APIError) as refused:
        create(api, "k1", card=card)
    first.join()
    assert refused.value.http_status == 409
    assert len(stripe_standin.intents()) == 1


def test_a_key_older_than_24_hours_is_forgotten(stripe_standin):
    api, card = proxied(stripe_standin), stripe_standin.card(OK)
    create(api, "k1", card=card)
    now = stripe_standin.proxy.clock()
    stripe_standin.proxy.clock = lambda: now + KEY_TTL + 1
    create(api, "k1", card=card)
    assert len(stripe_standin.intents()) == 2  # why the adapter searches past 23 hours


def test_429_carries_retry_after(stripe_standin):
    stripe_standin.proxy.fail_next(429)
    with pytest.raises(stripe.RateLimitError) as limited:
        create(proxied(stripe_standin), "k1", card=stripe_standin.card(OK))
    assert limited.value.headers["Retry-After"] == "1"


def test_seeded_chaos_replays_the_same_faults(stripe_standin):
    def run(seed):
        stripe_standin.proxy.reset()
        stripe_standin.proxy.chaos(seed=seed, rates={503: 0.3, "reset": 0.2})
        outcomes = []
        api, card = proxied(stripe_standin), stripe_standin.card(OK)
        for n in range(20):
            try:
                create(api, f"k{n}", card=card)
                outcomes.append("ok")
            except stripe.StripeError as exc:
                outcomes.append(type(exc).__name__)
        return outcomes

    first = run(7)
    assert first == run(7) and {"ok", "APIError", "APIConnectionError"} <= set(first)
    assert sum(stripe_standin.proxy.injected.values()) == 20 - first.count("ok")


@pytest.mark.parametrize(
    "fault", [429, 503, 500, "reset", "lost", ("timeout", 1.5), ("hang", 1.5), "conflict", "reused"]
)
def test_an_unknown_outcome_is_reconciled_with_the_same_key(
    make_account, stripe_standin, settings, fault
):
    """Every fault that leaves the outcome unknown: the attempt waits, nothing is re-sent under
    a new key, and the sweeper's re-send with the same key and body settles it."""
    [shop] = issued_unpaid(make_account, stripe_standin)
    invoice = Invoice.objects.get(account=shop)
    settings.STRIPE_TIMEOUT_SECONDS = 1
    key = f"invoice-{invoice.pk}-attempt-1"
    proxy = stripe_standin.proxy
    if fault == "conflict":  # the key is still running at Stripe: 409
        proxy.in_flight.add(key)
    elif fault == "reused":  # the key was used with another body: 400 idempotency_error
        proxy.stored[key] = ("other body", 200, [], b"{}", proxy.clock())
    else:
        proxy.fail_next(fault)
    payments.invoice_collect(invoice_id=invoice.pk)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "unknown"
    assert payments.invoice_collect(invoice_id=invoice.pk) is None  # in flight: not re-sent
    # The fault passes (the first request finished; the other body's entry expired).
    proxy.in_flight.discard(key)
    if fault == "reused":
        del proxy.stored[key]
    later = datetime.now(UTC) + payments.IN_FLIGHT_TIMEOUT + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):  # staleness is judged by the wall clock
        payments.attempts_reconcile(as_of=later)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert {k for path, k in proxy.keys if path == "/v1/payment_intents"} == {key}
    assert [i.status for i in stripe_standin.intents()] == ["succeeded"]
    assert PaymentAttempt.objects.count() == 1
