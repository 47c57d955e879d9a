"""The frame every console action shares (console.services.operator_action): a reason first,
then the change and its operator row in one transaction, or neither."""

import inspect
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from accounts.errors import Conflict, DomainError
from accounts.models import Account, Membership
from audit.models import AuditEntry
from billing import invoicing
from billing.models import Dispute, Dunning, Invoice, TicketDispute
from console import services
from metering.models import UsageAnomaly, UsageHold
from plans.models import Subscription
from plans.services import subscription_transition
from tests.billing.test_invoice_tax import DE_VALID_VAT, buyer, issue

pytestmark = pytest.mark.django_db


def subscription_of(invoice: Invoice) -> Subscription:
    return Subscription.objects.get(pk=invoice.subscription_id)


# Each action of the console, called on the past-due invoice (or its subscription).
ACTIONS = {
    "invoice_retry_now": lambda i, r: services.invoice_retry_now(invoice=i, reason=r),
    "invoice_remind_now": lambda i, r: services.invoice_remind_now(invoice=i, reason=r),
    "dunning_pause": lambda i, r: services.dunning_pause(
        invoice=i, until=timezone.now() + timedelta(days=20), reason=r
    ),
    "dunning_resume": lambda i, r: services.dunning_resume(invoice=i, reason=r),
    "invoice_mark_paid": lambda i, r: services.invoice_mark_paid(
        invoice=i, reference="BANK-2026-77", reason=r
    ),
    "invoice_void": lambda i, r: services.invoice_void(invoice=i, reason=r),
    "invoice_mark_uncollectible": lambda i, r: services.invoice_mark_uncollectible(
        invoice=i, reason=r
    ),
    "invoice_credit": lambda i, r: services.invoice_credit(
        invoice=i, amount_minor=1000, description="Goodwill credit", reason=r
    ),
    "invoice_release_hold": lambda i, r: services.invoice_release_hold(invoice=i, reason=r),
    "invoice_vat_give_back": lambda i, r: services.invoice_vat_give_back(
        invoice=Invoice.objects.get(account_id=i.account_id, vat_id_unconfirmed=True), reason=r
    ),
    "subscription_suspend": lambda i, r: services.subscription_suspend(
        subscription=subscription_of(i), reason=r
    ),
    "subscription_reactivate": lambda i, r: services.subscription_reactivate(
        subscription=subscription_of(i), reason=r
    ),
    "member_logins_unlock": lambda i, r: services.member_logins_unlock(account=i.account, reason=r),
    "account_channel_change": lambda i, r: services.account_channel_change(
        account=Account.objects.get(pk=i.account_id), to="stripe", reason=r
    ),
    "dispute_decide": lambda i, r: services.dispute_decide(
        dispute=Dispute.objects.get(invoice=i), decision="suspend", reason=r
    ),
    "ticket_dispute_decide": lambda i, r: services.ticket_dispute_decide(
        dispute=TicketDispute.objects.get(account_id=i.account_id), accept=False, reason=r
    ),
    "held_anomaly_decide": lambda i, r: services.held_anomaly_decide(
        anomaly=UsageAnomaly.objects.get(account_id=i.account_id), release=True, reason=r
    ),
    "held_loop_decide": lambda i, r: services.held_loop_decide(
        hold=UsageHold.objects.get(account_id=i.account_id), release=False, reason=r
    ),
}


# What makes an action apply to the past-due invoice, where it does not already.
def _paused(invoice: Invoice) -> None:
    services.dunning_pause(
        invoice=invoice, until=timezone.now() + timedelta(days=5), reason="set up"
    )


def _held(invoice: Invoice) -> None:
    Dunning.objects.filter(invoice=invoice).update(held_reason="over the spending cap")


def _suspended(invoice: Invoice) -> None:
    subscription_transition(
        subscription_id=invoice.subscription_id, to="suspended", reason="set up", at=timezone.now()
    )


def _member_locked_out(invoice: Invoice) -> None:
    member = User.objects.create_user("owner@shop.example")
    Membership.objects.create(user=member, account=invoice.account, role=Membership.Role.OWNER)
    AccessAttempt.objects.create(
        username=member.username,
        ip_address="203.0.113.7",
        user_agent="test",
        failures_since_start=settings.AXES_FAILURE_LIMIT,
        get_data="",
        post_data="",
        http_accept="",
        path_info="/login/",
    )


def _shopify_settled(invoice: Invoice) -> None:
    """An account that pays through Shopify with nothing unpaid: it may move to cards."""
    services.invoice_void(invoice=invoice, reason="set up")
    Account.objects.filter(pk=invoice.account_id).update(billing_channel="shopify")


def _vat_unconfirmed(invoice: Invoice) -> None:
    """Another invoice of the account charged VAT while VIES had not confirmed its VAT id; VIES
    has confirmed it since (the action acts on that one)."""
    account = buyer(invoice.account, country="DE", vat_id=DE_VALID_VAT, tax_id_status="pending")
    assert issue(account, 10000).tax_minor > 0
    buyer(account, tax_id_status="valid", tax_id_checked_at=timezone.now())


def _dispute_lost(invoice: Invoice) -> None:
    """A card dispute of the invoice's charge, lost (as billing.disputes records Stripe's)."""
    now = timezone.now()
    Dispute.objects.create(
        attempt=invoice.attempts.first(),
        invoice=invoice,
        stripe_dispute_id="dp_frame",
        status="lost",
        amount_minor=invoice.total_minor,
        currency=invoice.currency,
        payload={"id": "dp_frame"},
        created_at=now,
        updated_at=now,
    )


def _ticket_contested(invoice: Invoice) -> None:
    """A ticket of the account its merchant contested, waiting for an operator."""
    TicketDispute.objects.create(
        account_id=invoice.account_id,
        ticket="T-1",
        reason="spam",
        filed_by="owner@shop.example",
        created_at=timezone.now(),
    )


def _spike_open(invoice: Invoice) -> None:
    """A day of the account's usage held as a spike, waiting for a decision."""
    UsageAnomaly.objects.create(
        account_id=invoice.account_id,
        meter="helpdesk_tickets",
        day=timezone.now().date(),
        observed=400,
        baseline=40,
        spread=2,
        weeks=8,
        held=0,
        status="open",
        opened_at=timezone.now(),
    )


def _loop_held(invoice: Invoice) -> None:
    """A ticket of the account held as part of a suspected loop."""
    UsageHold.objects.create(
        account_id=invoice.account_id,
        subject_kind="ticket",
        subject="L-1",
        kind="loop",
        reason="Suspected loop: more than 10 tickets from a@b.example within 60 minutes.",
        held_at=timezone.now(),
        release_after=timezone.now() + timedelta(days=14),
    )


PREPARE = {
    "held_anomaly_decide": _spike_open,
    "held_loop_decide": _loop_held,
    "dispute_decide": _dispute_lost,
    "ticket_dispute_decide": _ticket_contested,
    "account_channel_change": _shopify_settled,
    "dunning_resume": _paused,
    "invoice_release_hold": _held,
    "invoice_vat_give_back": _vat_unconfirmed,
    "subscription_reactivate": _suspended,
    "member_logins_unlock": _member_locked_out,
}


def state(invoice: Invoice) -> dict:
    """Everything an action could leave behind."""
    invoice.refresh_from_db()
    return {
        "audit rows": AuditEntry.objects.count(),
        "invoice": invoice.status,
        "subscription": subscription_of(invoice).status,
        "attempts": invoice.attempts.count(),
        "invoices and credit notes": Invoice.objects.count(),
        "dunning": list(Dunning.objects.filter(invoice=invoice).values()),
        "emails": len(mail.outbox),
    }


def test_the_table_names_every_console_action():
    actions = {
        name
        for name, function in inspect.getmembers(services, inspect.isfunction)
        if function.__module__ == services.__name__
        and not name.startswith("_")
        and name != "operator_action"
    }
    assert actions == set(ACTIONS)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("blank", ["", "  \n "])
def test_a_blank_reason_is_refused_and_nothing_happens(past_due, action, blank):
    PREPARE.get(action, lambda invoice: None)(past_due)
    mail.outbox.clear()
    before = state(past_due)
    with pytest.raises(DomainError, match="Say why: a reason is required.") as refused:
        ACTIONS[action](past_due, blank)
    assert refused.value.details == {"field": "reason"}
    assert state(past_due) == before
    # With a reason the same call acts: one operator row more (so the refusal above is the
    # reason's, not the state's).
    operator_rows = AuditEntry.objects.filter(action__startswith="operator.")
    count = operator_rows.count()
    ACTIONS[action](past_due, "asked by the customer")
    assert operator_rows.count() == count + 1


def test_a_change_failing_inside_the_frame_leaves_no_change_and_no_row(past_due):
    before = state(past_due)
    with (
        pytest.raises(Conflict, match="cannot become void"),
        services.operator_action(
            "operator.void", past_due, reason="billed by mistake", at=None
        ) as change,
    ):
        invoicing.invoice_void(invoice=change.row, reason=change.reason, at=change.at)
        # The first step is written (the invoice is void, its dunning gone) ...
        assert Invoice.objects.get(pk=past_due.pk).status == "void"
        assert not Dunning.objects.filter(invoice=past_due).exists()
        # ... and the next one fails: a void invoice cannot be voided again.
        invoicing.invoice_void(invoice=change.row, reason=change.reason, at=change.at)
    assert state(past_due) == before
    assert not AuditEntry.objects.filter(action="operator.void").exists()


def test_the_frame_writes_one_row_with_what_the_action_says(past_due):
    with services.operator_action(
        "operator.void", past_due, reason=" billed by mistake ", at=None
    ) as change:
        change.before = change.row.status
        invoicing.invoice_void(invoice=change.row, reason=change.reason, at=change.at)
        change.after = "void"
    row = AuditEntry.objects.get(action="operator.void")
    assert row == change.entry
    assert (row.object_id, row.before, row.after, row.reason) == (
        past_due.pk,
        "past_due",
        "void",
        "billed by mistake",
    )
    assert row.at == change.at
