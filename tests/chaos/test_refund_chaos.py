"""Chaos case for refunds (issue 26): partners refund through the API from several threads at
once (partial and full, racing for the same invoice's room, the same Idempotency-Key sent
twice at once) while Stripe's refund calls fail at random: answered 500, 503 or 429 without
acting, reset before they arrive, or acted on with the answer lost. The refund sweep then
settles what was left without an answer. No charge may be refunded twice for one Refund row,
nor more than it charged, and the ledger must say what Stripe holds.

Faults are drawn by the fault proxy (tests/stripe_proxy.py) from a seeded generator
(`CHAOS_SEED`), on `POST /v1/refunds` only; reads (what is refundable, the charge's refunds)
pass, as the sweep's lookups must be true before anything is sent again."""

import os
import queue
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from accounts import services as account_services
from billing import refunds, statement
from billing.models import AccountCredit, Invoice, Refund
from billing.reconcile import ledger_compare
from tests.billing.test_money_safety import in_threads
from tests.billing.test_refunds import (
    paid_invoice,
    refund_event,
    stand_in_refund_fails,
    stripe_refunds,
)
from tests.billing.test_statement import emails_sent
from tests.billing.test_webhooks import deliver
from tests.conftest import client_with_key

from .conftest import repetitions
from .test_money_chaos import everywhere

RATES = {500: 0.1, 503: 0.08, 429: 0.07, "reset": 0.1, "lost": 0.15}
# What a refused request may answer: the room taken by another request first, or the same
# key still running in another thread (a client sends it again; see below).
REFUSALS = {"credit_too_large", "refund_too_large", "idempotency_key_in_progress"}


def requests_for(invoice: Invoice, rng: random.Random) -> list[tuple[int, str, dict]]:
    """(invoice id, Idempotency-Key, body) of what partners ask for on one invoice: a full
    refund, partial credits and refunds that add up to the invoice, or four callers racing
    for 40 % each (two fit). The first request is also sent a second time with its key."""
    total = invoice.total_minor
    kind = rng.choice(["full", "partials", "race"])
    if kind == "full":
        asks = [(total, total)]
    elif kind == "partials":
        a, b = total // 4, total // 3
        asks = [(a, a), (b, b // 2), (total - a - b, total - a - b)]
    else:
        asks = [(total * 2 // 5, total * 2 // 5)] * 4
    made = [
        (invoice.pk, str(uuid.uuid4()), {"amount": amount, "refund": refund, "reason": kind})
        for amount, refund in asks
    ]
    return [*made, made[0]]


def settle(*, rounds: int = 40) -> int:
    """The refund sweep every 6 minutes (past IN_FLIGHT_TIMEOUT, by the wall clock) until no
    refund waits for an answer; returns how many sweeps it took."""
    as_of = datetime.now(UTC)
    for n in range(1, rounds + 1):
        as_of += refunds.IN_FLIGHT_TIMEOUT + timedelta(minutes=1)
        with time_machine.travel(as_of, tick=False):
            refunds.refunds_reconcile(as_of=as_of)
        if not Refund.objects.filter(status__in=refunds.IN_FLIGHT).exists():
            return n
    raise AssertionError(f"refunds still unanswered after {rounds} sweeps")


@pytest.mark.django_db(transaction=True)
def test_refunds_under_stripe_faults_refund_each_row_once(
    make_account, partner, stripe_standin, settings, chaos_report
):
    seed = int(os.environ.get("CHAOS_SEED", "26"))
    rng = random.Random(seed)
    count = repetitions("refund_invoices", fast=8, full=60)
    invoices = [
        paid_invoice(make_account(slug=f"r{n}"), stripe_standin, rng.choice([6000, 9900, 14900]))
        for n in range(count)
    ]
    _, raw = account_services.api_key_create(
        partner=partner, name="chaos", scopes=["read", "write", "refunds:write"]
    )
    work: queue.Queue = queue.Queue()
    asks = [ask for invoice in invoices for ask in requests_for(invoice, rng)]
    rng.shuffle(asks)
    for ask in asks:
        work.put(ask)
    answers: list[tuple[tuple, int, dict]] = []

    def partner_caller(i: int) -> None:
        api = client_with_key(raw)
        while True:
            try:
                ask = work.get_nowait()
            except queue.Empty:
                return
            invoice_id, key, body = ask
            response = api.post(
                f"/api/v1/invoices/{invoice_id}/credit-notes",
                body,
                format="json",
                headers={"Idempotency-Key": key},
            )
            answers.append((ask, response.status_code, response.json()))

    settings.STRIPE_TIMEOUT_SECONDS = 2
    stripe_standin.proxy.chaos(seed=seed, rates=RATES, path="/v1/refunds")
    in_threads(6, partner_caller)
    # A request that met its twin still running is sent again, as a client does: it gets
    # the first one's answer.
    for ask, status, body in list(answers):
        if status == 409 and body["error"]["code"] == "idempotency_key_in_progress":
            invoice_id, key, sent = ask
            again = client_with_key(raw).post(
                f"/api/v1/invoices/{invoice_id}/credit-notes",
                sent,
                format="json",
                headers={"Idempotency-Key": key},
            )
            assert again.status_code in (201, 409), again.json()
            assert again.headers.get("Idempotent-Replayed") == "true" or again.status_code == 409
    sweeps = settle()
    stripe_standin.proxy.chaos(seed=0, rates={}, path="/v1/refunds")
    injected = dict(stripe_standin.proxy.injected)
    settings.STRIPE_TIMEOUT_SECONDS = 15

    # Every request answered a note or a refusal in words; none a 500.
    for ask, status, body in answers:
        assert status == 201 or (status == 409 and body["error"]["code"] in REFUSALS), (
            ask,
            status,
            body,
        )
    assert sum(1 for _, status, _ in answers if status == 201) >= len(invoices)

    # The card's bank returns one refund days later: it becomes account credit.
    returned = rng.choice(list(Refund.objects.filter(status="succeeded")))
    stand_in_refund_fails(stripe_standin, returned.stripe_refund_id)
    with emails_sent():
        event = refund_event("evt_returned", "refund.failed", returned)
        assert deliver(Client(), event).status_code == 200

    rows = list(Refund.objects.select_related("attempt", "credit_note"))
    at_stripe = stripe_refunds(stripe_standin)
    # Each Refund row is at Stripe exactly once, as it says; nothing at Stripe is not ours.
    per_row = Counter(r.metadata["refund"] for r in at_stripe)
    assert set(per_row) == {str(row.pk) for row in rows}
    double_refunds = sum(n - 1 for n in per_row.values() if n > 1)
    assert double_refunds == 0, per_row
    by_id = {r.id: r for r in at_stripe}
    for row in rows:
        assert row.status in ("succeeded", "failed"), row
        held = by_id[row.stripe_refund_id]
        assert (held.amount, held.metadata["refund"]) == (row.amount_minor, str(row.pk))
        assert held.payment_intent == row.attempt.stripe_payment_intent
    # Per charge: as many Stripe refunds as rows, never more money back than it charged.
    for attempt_id, charge_rows in _by(rows, lambda r: r.attempt_id).items():
        attempt = charge_rows[0].attempt
        held = [r for r in at_stripe if r.payment_intent == attempt.stripe_payment_intent]
        assert len(held) == len(charge_rows), attempt_id
        assert sum(r.amount for r in held) <= attempt.amount_minor, attempt_id
    # A failed refund's amount is the account's credit, from its own credit note.
    failed = [row for row in rows if row.status == "failed"]
    assert [row.pk for row in failed] == [returned.pk]
    for row in failed:
        assert AccountCredit.objects.filter(
            source=row.credit_note,
            amount_minor=row.amount_minor,
            description__startswith="Refund to the card failed",
        ).exists()

    # The statement of account agrees with the rows and with Stripe.
    notes = _by(Invoice.objects.filter(kind="credit_note"), lambda n: n.credited_invoice_id)
    for invoice in invoices:
        figures = statement.invoice_figures(invoice)
        mine = [r for r in rows if r.credit_note.credited_invoice_id == invoice.pk]
        succeeded = sum(r.amount_minor for r in mine if r.status == "succeeded")
        credited = -sum(n.total_minor for n in notes.get(invoice.pk, []))
        assert figures.refunded_minor == succeeded, invoice.number
        assert figures.credited_minor == credited <= invoice.total_minor, invoice.number
        intent = invoice.attempts.get().stripe_payment_intent
        stripe_succeeded = sum(
            r.amount for r in at_stripe if r.payment_intent == intent and r.status == "succeeded"
        )
        assert stripe_succeeded == succeeded, invoice.number
        balance = statement.account_statement(account=invoice.account).credit_balance_minor
        assert balance == credited - succeeded, invoice.number
    since, until = everywhere()
    assert ledger_compare(since=since, until=until) == []

    chaos_report(
        "refunds under Stripe faults",
        invoices=count,
        requests=len(answers),
        credit_notes=sum(len(n) for n in notes.values()),
        refunds=len(rows),
        faults=injected,
        refunded_once=sum(1 for n in per_row.values() if n == 1),
        double_refunds=double_refunds,
        returned_by_the_bank=len(failed),
        sweeps=sweeps,
    )


def _by(items, key) -> dict:
    grouped: dict = defaultdict(list)
    for item in items:
        grouped[key(item)].append(item)
    return grouped
