"""Each console action: the states it leaves, exactly one operator row in the audit log, and
the emails it sends. Each goes through the same service as the automatic flows."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from audit.models import AuditEntry
from billing import invoicing, payments
from billing.dunning import dunning_run
from billing.models import Dunning, Invoice, InvoiceKind
from billing.run import run_billing
from plans.models import Subscription
from plans.services import subscription_transition
from tests.billing.test_payments import OK, use_card

pytestmark = pytest.mark.django_db


def url(invoice, action):
    return f"/console/invoices/{invoice.pk}/{action}/"


def operator_rows():
    return list(AuditEntry.objects.filter(action__startswith="operator."))


def the_operator_row(action, obj):
    rows = operator_rows()
    assert [(r.action, r.object_type, r.object_id) for r in rows] == [
        (action, obj._meta.model_name, obj.pk)
    ]
    row = rows[0]
    assert (row.source, row.actor) == ("operator", "olivia")
    return row


def subscription_of(invoice):
    return Subscription.objects.get(pk=invoice.subscription_id)


def test_retry_now_charges_through_invoice_charge_and_reactivates(
    past_due, partner_api, stripe_standin, act
):
    subscription_transition(
        subscription_id=past_due.subscription_id, to="suspended", reason="test", at=timezone.now()
    )
    use_card(partner_api, stripe_standin, OK)  # the merchant updated the card
    mail.outbox.clear()
    response = act(url(past_due, "retry"), reason="customer called: new card")
    assert response.status_code == 302
    past_due.refresh_from_db()
    assert past_due.status == "paid"
    assert subscription_of(past_due).status == "active"
    attempt = past_due.attempts.order_by("number").last()
    assert (attempt.trigger, attempt.status) == ("operator", "succeeded")
    row = the_operator_row("operator.retry_now", past_due)
    assert row.before == "past_due" and row.after["status"] == "paid"
    assert row.reason == "customer called: new card"
    assert [m.subject for m in mail.outbox] == [
        f"Receipt for invoice {past_due.number}",
        "Your subscription is active again",
    ]
    # The state changes the charge caused name the operator too.
    moved = AuditEntry.objects.get(action="invoice.status", after="paid")
    assert (moved.source, moved.actor) == ("operator", "olivia")


def test_send_reminder_now_emails_the_failure_again(past_due, act):
    mail.outbox.clear()
    act(url(past_due, "remind"), reason="asked by the account manager")
    past_due.refresh_from_db()
    assert past_due.status == "past_due"
    the_operator_row("operator.remind_now", past_due)
    assert [m.subject for m in mail.outbox] == [f"Payment failed for invoice {past_due.number}"]
    assert "The bank declined" in mail.outbox[0].body


def test_pause_dunning_skips_retries_and_suspension_until_the_date(past_due, act):
    dunning = Dunning.objects.get(invoice=past_due)
    retry_at = dunning.next_retry_at
    until = (timezone.now() + timedelta(days=20)).date()
    mail.outbox.clear()
    act(url(past_due, "pause"), reason="promised to pay by transfer", until=until.isoformat())
    dunning.refresh_from_db()
    assert dunning.paused_until.date() == until
    assert dunning.suspend_at >= dunning.paused_until
    row = the_operator_row("operator.pause_dunning", past_due)
    assert row.after["paused_until"].startswith(until.isoformat())
    # A dunning run while paused leaves it alone, even with its retry overdue.
    done = dunning_run(as_of=max(retry_at, timezone.now()) + timedelta(days=1))
    assert done == {"retries": 0, "reminders": 0, "suspensions": 0}
    assert past_due.attempts.count() == 1
    assert mail.outbox == []


def test_resume_dunning_ends_the_pause(past_due, act):
    from console import services

    services.dunning_pause(
        invoice=past_due, until=timezone.now() + timedelta(days=5), reason="set up"
    )
    assert AuditEntry.objects.filter(action="operator.pause_dunning").count() == 1
    mail.outbox.clear()
    act(url(past_due, "resume"), reason="the transfer did not come")
    assert Dunning.objects.get(invoice=past_due).paused_until is None
    rows = AuditEntry.objects.filter(action="operator.resume_dunning")
    assert rows.count() == 1 and rows.get().actor == "olivia"
    assert mail.outbox == []


def test_mark_paid_out_of_band_settles_and_lifts_the_suspension(past_due, act):
    subscription_transition(
        subscription_id=past_due.subscription_id, to="suspended", reason="test", at=timezone.now()
    )
    mail.outbox.clear()
    act(url(past_due, "mark-paid"), reason="wire received", reference="BANK-2026-77")
    past_due.refresh_from_db()
    assert past_due.status == "paid"
    assert not Dunning.objects.filter(invoice=past_due).exists()
    assert subscription_of(past_due).status == "active"
    row = the_operator_row("operator.mark_paid", past_due)
    assert row.after == {"status": "paid", "reference": "BANK-2026-77"}
    assert [m.subject for m in mail.outbox] == ["Your subscription is active again"]
    assert past_due.status_changes.last().reason == "paid out of band: BANK-2026-77"


def test_void_cancels_the_debt_and_reactivates(past_due, act):
    mail.outbox.clear()
    act(url(past_due, "void"), reason="billed by mistake")
    past_due.refresh_from_db()
    assert past_due.status == "void"
    assert not Dunning.objects.filter(invoice=past_due).exists()
    assert subscription_of(past_due).status == "active"
    the_operator_row("operator.void", past_due)
    assert mail.outbox == []


def test_mark_uncollectible_stops_collecting_and_keeps_the_subscription_state(past_due, act):
    mail.outbox.clear()
    act(url(past_due, "uncollectible"), reason="company closed")
    past_due.refresh_from_db()
    assert past_due.status == "uncollectible"
    assert not Dunning.objects.filter(invoice=past_due).exists()
    assert subscription_of(past_due).status == "past_due"
    the_operator_row("operator.mark_uncollectible", past_due)
    assert mail.outbox == []


def test_credit_note_on_an_unpaid_invoice_is_netted(past_due, act):
    mail.outbox.clear()
    act(
        url(past_due, "credit"),
        reason="Ticket 4411: Sam approved a goodwill gesture",
        description="Goodwill credit for the outage",
        amount="20.00",
    )
    note = Invoice.objects.get(kind=InvoiceKind.CREDIT_NOTE)
    assert (note.total_minor, note.status, note.credited_invoice_id) == (-2000, "paid", past_due.pk)
    # The customer's words on the note; the operator's reason only in the audit row.
    assert note.description == "Goodwill credit for the outage"
    assert [line.description for line in note.lines.all()] == ["Goodwill credit for the outage"]
    past_due.refresh_from_db()
    assert past_due.status == "past_due"
    assert invoicing.amount_due(past_due) == 4000  # the next charge asks for what is left
    row = the_operator_row("operator.credit_note", past_due)
    assert row.after["credit_note"] == note.number
    assert row.reason == "Ticket 4411: Sam approved a goodwill gesture"
    assert mail.outbox == []


def test_a_credit_note_needs_words_for_the_customer(past_due, act):
    response = act(url(past_due, "credit"), reason="goodwill", description="  ", amount="20.00")
    assert response.status_code == 400
    assert "Say what the credit is for: the customer reads it." in response.content.decode()
    assert not Invoice.objects.filter(kind=InvoiceKind.CREDIT_NOTE).exists()
    assert operator_rows() == []


def test_release_hold_makes_the_invoice_collectable_by_the_normal_path(
    make_account, partner_api, stripe_standin, act
):
    from tests.console.conftest import T0

    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")
    Subscription.objects.filter(account=account).update(spending_cap_minor=5000)
    use_card(partner_api, stripe_standin, OK)
    run_billing(as_of=T0)
    invoice = Invoice.objects.get(account=account)
    payments.invoice_collect(invoice_id=invoice.pk)
    assert Dunning.objects.get(invoice=invoice).held_reason
    assert invoice.pk not in payments.collectable_invoice_ids()
    mail.outbox.clear()
    act(url(invoice, "release-hold"), reason="cap raise approved by the customer")
    invoice.refresh_from_db()
    assert invoice.status == "paid"  # charged by the collection task the release woke
    assert invoice.attempts.get().trigger == "automatic"
    the_operator_row("operator.release_hold", invoice)
    assert [m.subject for m in mail.outbox] == [f"Receipt for invoice {invoice.number}"]


def test_suspend_then_reactivate_an_account(past_due, act):
    account_id = past_due.account_id
    mail.outbox.clear()
    act(f"/console/accounts/{account_id}/suspend/", reason="fraud review")
    subscription = subscription_of(past_due)
    assert subscription.status == "suspended"
    the_operator_row("operator.suspend", subscription)
    assert [m.subject for m in mail.outbox] == [
        f"Your subscription is suspended: invoice {past_due.number} is unpaid"
    ]


def test_reactivate_an_account(past_due, act):
    subscription_transition(
        subscription_id=past_due.subscription_id, to="suspended", reason="test", at=timezone.now()
    )
    mail.outbox.clear()
    act(f"/console/accounts/{past_due.account_id}/reactivate/", reason="review cleared")
    subscription = subscription_of(past_due)
    assert subscription.status == "active"
    the_operator_row("operator.reactivate", subscription)
    assert [m.subject for m in mail.outbox] == ["Your subscription is active again"]
    past_due.refresh_from_db()
    assert past_due.status == "past_due"  # still owed


def test_a_reason_is_required_and_nothing_happens_without_one(past_due, act):
    response = act(url(past_due, "void"), reason="   ")
    assert response.status_code == 400
    assert "a reason is required" in response.content.decode()
    past_due.refresh_from_db()
    assert past_due.status == "past_due"
    assert operator_rows() == []


def test_a_double_submission_acts_once(past_due, act):
    first = act(url(past_due, "remind"), reason="again", form_token="same-token")
    second = act(url(past_due, "remind"), reason="again", form_token="same-token")
    assert first.status_code == second.status_code == 302
    assert AuditEntry.objects.filter(action="operator.remind_now").count() == 1
    assert [m.subject for m in mail.outbox].count(
        f"Payment failed for invoice {past_due.number}"
    ) == 2  # the original failure email and one reminder, not two


def test_an_action_that_no_longer_applies_says_why(past_due, act, ops):
    act(url(past_due, "void"), reason="billed by mistake")
    response = act(url(past_due, "void"), reason="twice")
    assert response.status_code == 302
    page = ops.get(response.url).content.decode()
    assert "it cannot become void" in page
    assert AuditEntry.objects.filter(action="operator.void").count() == 1


def test_the_confirmation_page_says_what_will_happen(past_due, ops):
    page = ops.get(url(past_due, "mark-paid")).content.decode()
    assert "Records a payment received outside Stripe" in page
    assert 'name="reference"' in page and 'name="reason"' in page
    assert 'name="csrfmiddlewaretoken"' in page and 'name="form_token"' in page
