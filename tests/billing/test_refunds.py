"""Refunds through credit notes (issue 26, item 1): part of a credit note on a paid invoice goes
back to the card, through one claimed, idempotent, audited path like charges.

Stripe calls go to localstripe through the idempotency proxy (tests/stripe_proxy.py), which
answers repeated keys as Stripe does and loses answers on request. What localstripe lacks, and
how the tests stand in for it (test code only; the gateway speaks Stripe's documented API):

- Its refunds always succeed at once: it never makes a `pending` or `failed` refund, and it
  sends no `refund.*` webhooks. A failed refund is made by updating the stand-in's refund to
  `failed` through its own (permissive) update route, then delivering a signed `refund.failed`
  event, as Stripe would after the card's bank returned the money.
- It refuses no refund larger than what is refundable; the portal checks it itself (the
  charge's `amount - amount_refunded`, which localstripe computes like Stripe), so the cap is
  tested against that figure.
- It counts a failed refund in the charge's `amount_refunded`, where Stripe gives the money
  back to the balance; no test here refunds again after a failure.

Amounts are exact cents; times are fixed (the wall clock moves only where a test says so).
"""

import json
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.db import transaction

from accounts.errors import Conflict
from audit.models import AuditEntry
from billing import gateway, invoicing, payments, refunds, run, statement, webhooks
from billing.models import AccountCredit, Invoice, PaymentAttempt, Refund, StripeEvent
from console import selectors
from tests.billing.test_money_safety import in_threads
from tests.billing.test_payments import OK
from tests.billing.test_statement import card, emails_sent, issue
from tests.billing.test_webhooks import deliver

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def paid_invoice(account, stripe_standin, amount_minor: int = 6000) -> Invoice:
    """An invoice of `amount_minor` (no tax: the seller is not registered in the buyer's
    state), charged to Visa •••• 4242."""
    card(account, stripe_standin, OK)
    with transaction.atomic():  # as a close issues it (the counter row is locked)
        invoice = issue(account, amount_minor)
    with emails_sent():
        payments.invoice_charge(invoice_id=invoice.pk, trigger="automatic")
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.total_minor == amount_minor
    return invoice


def stripe_refunds(stripe_standin) -> list:
    return list(stripe_standin.client.v1.refunds.list(params={"limit": 100}).auto_paging_iter())


def credit(invoice, amount_minor, refund_minor, capture) -> Invoice:
    """Credit the invoice; what the credit note queues after its commit (the refund, emails)
    runs when the block ends, outside its transaction, as in production."""
    with capture(execute=True):
        return invoicing.credit_note_issue(
            invoice=invoice,
            amount_minor=amount_minor,
            description="Outage on 3 November",
            refund_minor=refund_minor,
        )


def refund_emails() -> list:
    return [m for m in mail.outbox if m.subject.startswith("Refund for invoice")]


# --- partial and full ----------------------------------------------------------------------


def test_a_partial_refund_goes_to_the_card_and_the_rest_is_account_credit(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    note = credit(invoice, 3000, 2000, django_capture_on_commit_callbacks)

    refund = Refund.objects.get()
    assert (refund.credit_note, refund.amount_minor, refund.status) == (note, 2000, "succeeded")
    assert refund.idempotency_key == f"refund-{note.pk}-{refund.attempt_id}"
    [at_stripe] = stripe_refunds(stripe_standin)
    assert at_stripe.id == refund.stripe_refund_id and at_stripe.amount == 2000
    assert at_stripe.payment_intent == refund.attempt.stripe_payment_intent
    assert at_stripe.metadata["refund"] == str(refund.pk)
    assert at_stripe.metadata["invoice"] == invoice.number
    # The rest of the note (3,000 − 2,000) is the account's credit, as before.
    [rest] = AccountCredit.objects.filter(account=account)
    assert (rest.amount_minor, rest.source_id) == (1000, note.pk)
    figures = statement.invoice_figures(invoice)
    assert (figures.credited_minor, figures.paid_minor, figures.refunded_minor) == (
        3000,
        6000,
        2000,
    )
    assert "$20.00 refunded to Visa •••• 4242" in statement.settlement_words(figures)
    assert statement.account_statement(account=account).credit_balance_minor == 1000
    [email] = refund_emails()
    assert email.subject == f"Refund for invoice {invoice.number}"
    assert "We refunded $20.00 to your Visa •••• 4242" in email.body
    assert "The rest of the credit note, $10.00, is your account credit" in email.body
    assert AuditEntry.objects.filter(action="refund.created").count() == 1
    assert list(
        AuditEntry.objects.filter(action="refund.status").values_list("before", "after")
    ) == [("sending", "succeeded")]


def test_a_full_refund_leaves_no_account_credit_and_nothing_refundable(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    credit(invoice, 6000, 6000, django_capture_on_commit_callbacks)

    assert Refund.objects.get().status == "succeeded"
    assert [r.amount for r in stripe_refunds(stripe_standin)] == [6000]
    assert not AccountCredit.objects.filter(account=account).exists()
    attempt = PaymentAttempt.objects.get()
    assert gateway.refundable_minor(payment_intent=attempt.stripe_payment_intent) == 0
    assert statement.invoice_figures(invoice).refunded_minor == 6000
    [email] = refund_emails()
    assert "We refunded $60.00" in email.body and "account credit" not in email.body


def test_without_a_refund_a_credit_note_on_a_paid_invoice_is_account_credit_as_before(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    credit(invoice, 1500, 0, django_capture_on_commit_callbacks)
    assert not Refund.objects.exists() and stripe_refunds(stripe_standin) == []
    assert AccountCredit.objects.get(account=account).amount_minor == 1500


# --- refused ---------------------------------------------------------------------------------


def test_a_refund_larger_than_the_note_or_of_an_unpaid_invoice_is_refused(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    with pytest.raises(refunds.RefundTooLarge, match="more than the credit note's total"):
        credit(invoice, 1000, 1001, django_capture_on_commit_callbacks)
    unpaid = issue(account, 2000, at=T0 + timedelta(days=30))
    with pytest.raises(Conflict, match="only a paid invoice's money"):
        credit(unpaid, 1000, 500, django_capture_on_commit_callbacks)
    # Nothing was written: no note, no refund, no credit.
    assert not Invoice.objects.filter(kind="credit_note").exists()
    assert not Refund.objects.exists() and stripe_refunds(stripe_standin) == []


def test_a_refund_is_capped_by_earlier_refunds_ours_and_stripes(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    credit(invoice, 2000, 2000, django_capture_on_commit_callbacks)
    # Someone refunds 3,000 more in Stripe's dashboard: Stripe says 1,000 is left.
    intent = PaymentAttempt.objects.get().stripe_payment_intent
    stripe_standin.client.v1.refunds.create(params={"payment_intent": intent, "amount": 3000})

    with pytest.raises(refunds.RefundTooLarge) as refused:
        credit(invoice, 2000, 1500, django_capture_on_commit_callbacks)
    words = str(refused.value)
    assert "At most $10.00 of invoice" in words
    assert "Stripe says $10.00 is still refundable" in words
    assert "we charged $40.00 by card on it less earlier refunds" in words
    assert Invoice.objects.filter(kind="credit_note").count() == 1  # the refused one rolled back

    credit(invoice, 2000, 1000, django_capture_on_commit_callbacks)
    assert sorted(r.amount for r in stripe_refunds(stripe_standin)) == [1000, 2000, 3000]
    assert statement.invoice_figures(invoice).refunded_minor == 3000  # ours only
    assert AccountCredit.objects.get(account=account).amount_minor == 1000


# --- lost answers and concurrency -----------------------------------------------------------


def test_a_lost_refund_answer_is_reconciled_without_a_second_refund(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    stripe_standin.proxy.fail_next("lost", path="/v1/refunds")  # refunded; the answer is lost
    credit(invoice, 2500, 2500, django_capture_on_commit_callbacks)
    refund = Refund.objects.get()
    assert refund.status == "unknown" and refund.stripe_refund_id == ""
    assert len(stripe_refunds(stripe_standin)) == 1
    assert refund_emails() == []

    # Within five minutes of the claim (wall clock), the sweep leaves it alone...
    assert refunds.refunds_reconcile(as_of=T0 + timedelta(days=40)) == 0
    # ...after them it asks Stripe, finds the refund by our row id and records it.
    later = datetime.now(tz=UTC) + timedelta(minutes=6)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        swept = run.collect_due(as_of=later)
    assert swept["refunds_reconciled"] == 1
    refund.refresh_from_db()
    [at_stripe] = stripe_refunds(stripe_standin)  # exactly one refund at Stripe
    assert (refund.status, refund.stripe_refund_id) == ("succeeded", at_stripe.id)
    assert len(refund_emails()) == 1


def test_a_refund_stripe_never_received_is_sent_again_with_the_same_key(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    stripe_standin.proxy.fail_next("reset", path="/v1/refunds")  # nothing reached Stripe
    credit(invoice, 2500, 2500, django_capture_on_commit_callbacks)
    assert Refund.objects.get().status == "unknown" and stripe_refunds(stripe_standin) == []

    later = datetime.now(tz=UTC) + timedelta(minutes=6)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert refunds.refunds_reconcile(as_of=later) == 1
    refund = Refund.objects.get()
    assert refund.status == "succeeded"
    assert [r.amount for r in stripe_refunds(stripe_standin)] == [2500]
    keys = [key for path, key in stripe_standin.proxy.keys if path.startswith("/v1/refunds")]
    assert keys == [refund.idempotency_key] * 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_of_one_refund_make_one_stripe_refund(account, stripe_standin):
    invoice = paid_invoice(account, stripe_standin)
    # The process that issued the note died after its commit: the refund waits, `created`.
    with mock.patch("billing.refunds._send_after_commit"):
        invoicing.credit_note_issue(
            invoice=invoice, amount_minor=4000, description="Outage", refund_minor=4000
        )
    refund = Refund.objects.get()
    assert refund.status == "created"
    stripe_standin.proxy.delay = 0.3  # Stripe takes its time: the senders overlap

    sent = in_threads(8, lambda i: refunds.refund_send(refund_id=refund.pk))
    assert sorted(sent) == [False] * 7 + [True], sent
    assert [r.amount for r in stripe_refunds(stripe_standin)] == [4000]
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    # And a sweep afterwards finds nothing to do.
    assert refunds.refunds_reconcile(as_of=datetime.now(tz=UTC) + timedelta(days=1)) == 0
    assert len(stripe_refunds(stripe_standin)) == 1


# --- webhooks -------------------------------------------------------------------------------


def refund_event(event_id: str, kind: str, refund: Refund) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "data": {
            "object": {
                "id": refund.stripe_refund_id,
                "object": "refund",
                "metadata": {"refund": str(refund.pk)},
            }
        },
    }


def stand_in_refund_fails(stripe_standin, refund_id: str) -> None:
    """What the card's bank does days later, made with the stand-in's own update route (test
    code only: Stripe sets a refund's status itself)."""
    request = urllib.request.Request(
        f"{stripe_standin.url}/v1/refunds/{refund_id}",
        data=b"status=failed",
        method="POST",
        headers={"Authorization": "Bearer sk_test_standin"},
    )
    assert json.loads(urllib.request.urlopen(request, timeout=10).read())["status"] == "failed"  # noqa: S310


def test_a_failed_refund_becomes_account_credit_and_is_shown_to_operators(
    account, stripe_standin, client, django_capture_on_commit_callbacks, settings
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    invoice = paid_invoice(account, stripe_standin)
    credit(invoice, 3000, 2000, django_capture_on_commit_callbacks)
    refund = Refund.objects.get()
    stand_in_refund_fails(stripe_standin, refund.stripe_refund_id)

    with emails_sent():
        assert deliver(client, refund_event("evt_r1", "refund.failed", refund)).status_code == 200
    refund.refresh_from_db()
    assert refund.status == "failed"
    assert refund.failure_reason.startswith("The refund did not reach the card")
    # The 2,000 that did not reach the card is account credit from the same note.
    credits = AccountCredit.objects.filter(account=account).order_by("pk")
    assert [(c.amount_minor, c.source_id) for c in credits] == [
        (1000, refund.credit_note_id),
        (2000, refund.credit_note_id),
    ]
    assert credits[1].description == "Refund to the card failed: Outage on 3 November"
    assert statement.account_statement(account=account).credit_balance_minor == 3000
    figures = statement.invoice_figures(invoice)
    assert figures.refunded_minor == 0
    assert "not refunded to Visa •••• 4242" in statement.settlement_words(figures)
    # Operators: an audit row, the site's admins mailed, the console's attention queue.
    assert AuditEntry.objects.filter(action="refund.credited").count() == 1
    assert any(
        m.subject.endswith(f"Refund of {refund.credit_note.number} failed") for m in mail.outbox
    )

    queue = selectors.attention_queue(
        filters={"attention": "refund_failed"}, page=1, now=datetime.now(tz=UTC)
    )
    [row] = list(queue.object_list)
    assert row.invoice == invoice
    assert any("Refund of $20.00 to the card failed" in need for need in row.needs)


def test_refund_webhooks_replayed_change_nothing(
    account, stripe_standin, client, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    credit(invoice, 3000, 2000, django_capture_on_commit_callbacks)
    refund = Refund.objects.get()
    stand_in_refund_fails(stripe_standin, refund.stripe_refund_id)
    events = [
        refund_event("evt_u", "refund.updated", refund),
        refund_event("evt_f", "refund.failed", refund),
        refund_event("evt_c", "charge.refund.updated", refund),
    ]
    with emails_sent():
        answers = [deliver(client, event).status_code for event in events * 3]
    assert answers == [200] * 9
    assert StripeEvent.objects.count() == 3
    assert not StripeEvent.objects.filter(processed_at__isnull=True).exists()
    # Also processed again by hand: a processed event is not processed twice.
    assert not webhooks.stripe_event_process(stripe_event_id="evt_f")
    refund.refresh_from_db()
    assert refund.status == "failed"
    assert AccountCredit.objects.filter(account=account).count() == 2  # the rest, the failure
    assert AuditEntry.objects.filter(action="refund.credited").count() == 1
    assert list(
        AuditEntry.objects.filter(action="refund.status")
        .order_by("pk")
        .values_list("before", "after")
    ) == [("sending", "succeeded"), ("succeeded", "failed")]
    assert len(refund_emails()) == 1  # the success, once


# --- the operator's console ------------------------------------------------------------------


@pytest.fixture
def ops(client, django_user_model):
    from tests.console.conftest import operators_group

    user = django_user_model.objects.create_user(
        "olivia", email="olivia@ops.example", password="pw-operator-1", is_staff=True
    )
    user.groups.add(operators_group())
    client.force_login(user)
    return client


def test_an_operator_refunds_part_of_a_credit_to_the_card_from_the_console(
    account, stripe_standin, ops, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    form = ops.get(f"/console/invoices/{invoice.pk}/credit/").content.decode()
    assert "Refund to the card, tax included" in form
    assert "What is not refunded to the card becomes the account&#x27;s credit" in form

    def act(**data):
        with django_capture_on_commit_callbacks(execute=True):
            return ops.post(
                f"/console/invoices/{invoice.pk}/credit/",
                {"form_token": uuid.uuid4().hex, "reason": "Ticket 88: outage", **data},
                follow=True,
            )

    refused = act(amount="30.00", refund="70.00", description="Outage on 3 November")
    # Refused in words on the invoice's page; nothing issued.
    assert "more than the credit note&#x27;s total" in refused.content.decode()
    assert not Invoice.objects.filter(kind="credit_note").exists()
    assert not Refund.objects.exists()

    act(amount="30.00", refund="20.00", description="Outage on 3 November")
    refund = Refund.objects.get()
    assert (refund.amount_minor, refund.status) == (2000, "succeeded")
    assert [r.amount for r in stripe_refunds(stripe_standin)] == [2000]
    assert AccountCredit.objects.get(account=account).amount_minor == 1000
    row = AuditEntry.objects.get(action="operator.credit_note")
    assert (row.actor, row.after["refund_to_card"]) == ("olivia", 2000)
    assert len(refund_emails()) == 1


# --- the ledger against Stripe ---------------------------------------------------------------


def test_the_ledger_comparison_knows_the_portals_refunds_and_reports_the_others(
    account, stripe_standin, django_capture_on_commit_callbacks
):
    from billing.reconcile import ledger_compare
    from tests.billing.test_reconcile_stripe import span

    invoice = paid_invoice(account, stripe_standin)
    credit(invoice, 2000, 2000, django_capture_on_commit_callbacks)
    since, until = span()  # holds our clock and the stand-in's
    assert [d.kind for d in ledger_compare(since=since, until=until)] == []
    intent = PaymentAttempt.objects.get().stripe_payment_intent
    stripe_standin.client.v1.refunds.create(params={"payment_intent": intent, "amount": 700})
    [outside] = ledger_compare(since=since, until=until)
    assert outside.kind == "refund_not_in_ledger" and "700 USD" in outside.stripe


# --- what the merchant sees ------------------------------------------------------------------


def test_the_invoices_tab_shows_each_refund_and_its_status(
    account, owner, client, stripe_standin, django_capture_on_commit_callbacks
):
    invoice = paid_invoice(account, stripe_standin)
    note = credit(invoice, 3000, 2000, django_capture_on_commit_callbacks)
    client.force_login(owner)
    page = client.get(f"/billing/{account.slug}/invoices/").content.decode()
    assert f"$20.00 refunded to Visa •••• 4242 ({note.number})" in page
    assert "credited $30.00" in page

    refund = Refund.objects.get()
    stand_in_refund_fails(stripe_standin, refund.stripe_refund_id)
    with django_capture_on_commit_callbacks(execute=True):
        refunds.refund_changed(stripe_refund=refund.stripe_refund_id)
    page = client.get(f"/billing/{account.slug}/invoices/").content.decode()
    assert (
        f"$20.00 not refunded to Visa •••• 4242 (the refund failed: account credit instead) "
        f"({note.number})"
    ) in page
