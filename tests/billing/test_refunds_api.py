"""Partners refund through the API (issue 26, item 1): `POST /api/v1/invoices/{id}/credit-notes`
credits an invoice and sends part of the note back to the card, only for a key that holds the
`refunds:write` scope. The refund is the console's: the same rows, caps and Stripe calls
(billing.refunds); localstripe behind the idempotency proxy stands in for Stripe.

The requests commit as in production (`transaction=True`): the refund is sent after the credit
note's commit, inside the request, so the answer already carries Stripe's outcome.
Amounts are exact cents.
"""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import transaction

from accounts import services as account_services
from audit.models import AuditEntry
from billing import disputes, gateway, statement
from billing.models import AccountCredit, Invoice, PaymentAttempt, Refund
from outbox import delivery as outbox_delivery
from outbox import services as outbox
from outbox.models import Event
from tests.billing.test_disputes import stripe_dispute
from tests.billing.test_refunds import (
    paid_invoice,
    refund_event,
    stand_in_refund_fails,
    stripe_refunds,
)
from tests.billing.test_statement import emails_sent, issue
from tests.billing.test_webhooks import deliver
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db(transaction=True)

REFUNDER = ["read", "write", "refunds:write"]


@pytest.fixture
def listening(partner, monkeypatch):
    """The partner listens to webhooks; deliveries are recorded, never sent."""
    monkeypatch.setattr(outbox_delivery, "http_post", lambda url, body, headers: 200)
    outbox.endpoint_create(partner=partner, url="https://hooks.example/in")


def api_key(partner, scopes=None):
    """A partner key and a client holding it (default scopes: read and write)."""
    key, raw = account_services.api_key_create(partner=partner, name="refunds", scopes=scopes)
    return key, client_with_key(raw)


def credit_note(api, invoice, key: str | None = None, **body):
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(
        f"/api/v1/invoices/{invoice.pk}/credit-notes", body, format="json", headers=headers
    )


def error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def nothing_credited(stripe_standin) -> bool:
    return (
        not Invoice.objects.filter(kind="credit_note").exists()
        and not Refund.objects.exists()
        and stripe_refunds(stripe_standin) == []
    )


# --- the scope -------------------------------------------------------------------------------


def test_a_key_without_refunds_write_may_credit_but_never_refund(account, partner, stripe_standin):
    invoice = paid_invoice(account, stripe_standin)
    _, api = api_key(partner)  # the default scopes: read and write

    refused = credit_note(api, invoice, amount=3000, refund=2000, reason="Outage")
    assert error(refused) == (403, "insufficient_scope")
    assert "refunds:write" in refused.json()["error"]["message"]
    assert nothing_credited(stripe_standin)

    # The same key credits without a refund: the note is the account's credit.
    credited = credit_note(api, invoice, amount=3000, reason="Outage")
    assert credited.status_code == 201, credited.json()
    assert credited.json()["credit_note"]["refunds"] == []
    assert credited.json()["account_credit"] == {"amount": 3000, "currency": "USD"}
    assert stripe_refunds(stripe_standin) == []


def test_a_refunds_only_key_credits_here_and_nowhere_else(account, partner, stripe_standin):
    invoice = paid_invoice(account, stripe_standin)
    _, api = api_key(partner, ["refunds:write"])
    assert credit_note(api, invoice, amount=1000, refund=1000, reason="Goodwill").status_code == 201
    assert error(api.post(f"/api/v1/invoices/{invoice.pk}/retry")) == (403, "insufficient_scope")
    assert error(api.get(f"/api/v1/invoices/{invoice.pk}")) == (403, "insufficient_scope")


def test_refunds_write_is_never_a_default_scope(partner):
    key, _ = api_key(partner)
    assert key.scopes == ["read", "write"]


# --- partial and full --------------------------------------------------------------------------


def test_a_partial_refund_answers_with_the_note_its_refund_and_the_account_credit(
    account, partner, stripe_standin, listening
):
    invoice = paid_invoice(account, stripe_standin)  # $60.00, Visa •••• 4242
    key, api = api_key(partner, REFUNDER)

    response = credit_note(
        api, invoice, amount=3000, refund=2000, reason="Outage on 3 November, agreed by phone"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    note = Invoice.objects.get(kind="credit_note")
    refund = Refund.objects.get()
    assert body["credit_note"]["number"] == note.number
    assert body["credit_note"]["kind"] == "credit_note"
    assert body["credit_note"]["total"] == {"amount": -3000, "currency": "USD"}
    assert body["credit_note"]["description"] == "Outage on 3 November, agreed by phone"
    [shown] = body["credit_note"]["refunds"]
    assert shown["id"] == refund.pk and shown["credit_note"] == note.number
    assert shown["amount"] == {"amount": 2000, "currency": "USD"}
    assert shown["status"] == "succeeded" and shown["failure_reason"] is None
    assert body["invoice"]["status"] == "paid"
    assert body["invoice"]["credited"] == {"amount": 3000, "currency": "USD"}
    assert body["invoice"]["refunded"] == {"amount": 2000, "currency": "USD"}
    assert body["invoice"]["refunds"] == [shown]
    assert body["account_credit"] == {"amount": 1000, "currency": "USD"}
    # At Stripe: one refund of $20.00 of the invoice's charge.
    [at_stripe] = stripe_refunds(stripe_standin)
    assert (at_stripe.amount, at_stripe.id) == (2000, refund.stripe_refund_id)
    assert at_stripe.payment_intent == PaymentAttempt.objects.get().stripe_payment_intent
    assert statement.account_statement(account=account).credit_balance_minor == 1000
    # Audited, naming the key; the partner's reason is kept.
    [row] = AuditEntry.objects.filter(action="invoice.credited")
    assert (row.source, row.actor) == ("partner", f"API key {key.prefix}")
    assert row.reason == "Outage on 3 November, agreed by phone"
    assert row.after["credit_note"] == note.number and row.after["refund_to_card"] == 2000
    assert AuditEntry.objects.get(action="refund.created").actor == f"API key {key.prefix}"
    # Partners hear of it: the invoice paid earlier, the note, then the money on the card.
    assert list(Event.objects.order_by("sequence").values_list("type", flat=True)) == [
        "invoice.finalized",
        "invoice.paid",
        "credit_note.issued",
        "invoice.refunded",
    ]
    refunded = Event.objects.get(type="invoice.refunded").data
    assert refunded["invoice"]["number"] == invoice.number
    assert refunded["refund"] == {
        "id": refund.pk,
        "credit_note": note.number,
        "amount": {"amount": 2000, "currency": "USD"},
        "status": "succeeded",
        "failure_reason": None,
    }
    # The credit note read back later says the same.
    again = api.get(f"/api/v1/invoices/{note.pk}").json()
    assert again["refunds"] == [shown]


def test_a_full_refund_leaves_no_account_credit_and_nothing_refundable(
    account, partner, stripe_standin
):
    invoice = paid_invoice(account, stripe_standin)
    _, api = api_key(partner, REFUNDER)

    body = credit_note(api, invoice, amount=6000, refund=6000, reason="Cancelled").json()

    assert [r["status"] for r in body["credit_note"]["refunds"]] == ["succeeded"]
    assert body["invoice"]["refunded"] == {"amount": 6000, "currency": "USD"}
    assert body["account_credit"] == {"amount": 0, "currency": "USD"}
    assert [r.amount for r in stripe_refunds(stripe_standin)] == [6000]
    intent = PaymentAttempt.objects.get().stripe_payment_intent
    assert gateway.refundable_minor(payment_intent=intent) == 0
    assert not AccountCredit.objects.exists()
    # Nothing is left to credit: a second note is refused, with the room in words.
    refused = credit_note(api, invoice, amount=100, refund=100, reason="Again")
    assert error(refused) == (409, "credit_too_large")
    assert "at most $0.00 of invoice" in refused.json()["error"]["message"]


# --- idempotency -----------------------------------------------------------------------------


def test_the_same_idempotency_key_twice_makes_one_refund(account, partner, stripe_standin):
    invoice = paid_invoice(account, stripe_standin)
    _, api = api_key(partner, REFUNDER)
    key = str(uuid.uuid4())

    first = credit_note(api, invoice, key, amount=2500, refund=2500, reason="Outage")
    again = credit_note(api, invoice, key, amount=2500, refund=2500, reason="Outage")

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert [r.amount for r in stripe_refunds(stripe_standin)] == [2500]
    assert Invoice.objects.filter(kind="credit_note").count() == 1
    assert Refund.objects.count() == 1
    # Another body with the key is refused; without a key a second note is a second note.
    reused = credit_note(api, invoice, key, amount=2500, refund=2000, reason="Outage")
    assert error(reused) == (409, "idempotency_key_reused")
    assert credit_note(api, invoice, amount=1000, refund=1000, reason="More").status_code == 201
    assert sorted(r.amount for r in stripe_refunds(stripe_standin)) == [1000, 2500]


# --- refused -----------------------------------------------------------------------------------


def test_over_the_room_the_note_or_the_card_is_refused_with_the_limit_in_words(
    account, partner, stripe_standin
):
    invoice = paid_invoice(account, stripe_standin)
    _, api = api_key(partner, REFUNDER)

    over_room = credit_note(api, invoice, amount=6001, refund=1000, reason="Too much")
    assert error(over_room) == (409, "credit_too_large")
    assert over_room.json()["error"]["details"]["most"] == 6000
    assert f"at most $60.00 of invoice {invoice.number}" in over_room.json()["error"]["message"]

    over_note = credit_note(api, invoice, amount=1000, refund=1500, reason="Too much")
    assert error(over_note) == (409, "refund_too_large")
    assert "more than the credit note's total" in over_note.json()["error"]["message"]

    # Someone refunded $45.00 in Stripe's dashboard: $15.00 is left for the card.
    intent = PaymentAttempt.objects.get().stripe_payment_intent
    stripe_standin.client.v1.refunds.create(params={"payment_intent": intent, "amount": 4500})
    over_card = credit_note(api, invoice, amount=3000, refund=2000, reason="Outage")
    assert error(over_card) == (409, "refund_too_large")
    assert over_card.json()["error"]["details"]["most"] == 1500
    assert "At most $15.00 of invoice" in over_card.json()["error"]["message"]
    assert not Invoice.objects.filter(kind="credit_note").exists()
    assert not Refund.objects.exists()
    assert [r.amount for r in stripe_refunds(stripe_standin)] == [4500]  # the dashboard's


def test_an_unpaid_invoice_is_not_refundable(account, partner, stripe_standin):
    with transaction.atomic():  # as a close issues it (the counter row is locked)
        unpaid = issue(account, 4000)
    _, api = api_key(partner, REFUNDER)
    refused = credit_note(api, unpaid, amount=1000, refund=500, reason="Outage")
    assert error(refused) == (409, "not_refundable")
    assert (
        "only a paid invoice's money can go back to the card" in refused.json()["error"]["message"]
    )
    assert nothing_credited(stripe_standin)


def test_a_refund_of_a_disputed_charge_is_refused_with_the_disputes_reason(
    account, partner, stripe_standin
):
    invoice = paid_invoice(account, stripe_standin)
    attempt = invoice.attempts.get()
    held = stripe_dispute(attempt)  # a chargeback: "fraudulent", needs a response
    with emails_sent():
        disputes.dispute_apply(
            attempt=attempt, state=gateway.dispute_state(held), at=datetime.now(tz=UTC)
        )
    _, api = api_key(partner, REFUNDER)

    refused = credit_note(api, invoice, amount=3000, refund=2000, reason="Outage")

    assert error(refused) == (409, "charge_disputed")
    words = refused.json()["error"]["message"]
    assert "reason fraudulent" in words and "cannot be refunded while the dispute" in words
    assert refused.json()["error"]["details"]["dispute"] == {
        "id": "dp_1",
        "reason": "fraudulent",
        "status": "needs_response",
    }
    assert nothing_credited(stripe_standin)


def test_the_body_is_checked_at_the_edge(account, partner, stripe_standin):
    invoice = paid_invoice(account, stripe_standin)
    _, api = api_key(partner, REFUNDER)
    for body, field in (
        ({"refund": 100, "reason": "x"}, "amount"),
        ({"amount": 0, "reason": "x"}, "amount"),
        ({"amount": "100", "reason": "x"}, "amount"),
        ({"amount": 100, "refund": -1, "reason": "x"}, "refund"),
        ({"amount": 100}, "reason"),
        ({"amount": 100, "reason": "a\u202eb"}, "reason"),
    ):
        response = credit_note(api, invoice, **body)
        assert error(response) == (400, "invalid"), body
        assert field in response.json()["error"]["details"]["fields"], body
    assert nothing_credited(stripe_standin)


# --- Stripe's later answer ---------------------------------------------------------------------


def test_a_refund_the_bank_returns_is_account_credit_and_partners_are_told(
    account, partner, stripe_standin, listening, client
):
    invoice = paid_invoice(account, stripe_standin)
    _, api = api_key(partner, REFUNDER)
    note = credit_note(api, invoice, amount=2000, refund=2000, reason="Outage").json()
    refund = Refund.objects.get()
    stand_in_refund_fails(stripe_standin, refund.stripe_refund_id)

    with emails_sent():
        assert deliver(client, refund_event("evt_r1", "refund.failed", refund)).status_code == 200

    [failed] = Event.objects.filter(type="invoice.refund_failed").values_list("data", flat=True)
    assert failed["refund"]["status"] == "failed"
    assert failed["refund"]["failure_reason"].startswith("The refund did not reach the card")
    [shown] = api.get(f"/api/v1/invoices/{note['credit_note']['id']}").json()["refunds"]
    assert shown["status"] == "failed"
    assert api.get(f"/api/v1/invoices/{invoice.pk}").json()["refunded"]["amount"] == 0
    assert statement.account_statement(account=account).credit_balance_minor == 2000
