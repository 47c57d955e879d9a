"""What a billing operator can do from the console. Each action is a thin layer over the
service the automatic flows use (no second code path), with the operator's reason kept in one
audit row `operator.<action>`, written in the same transaction as the change.

The state changes the underlying services audit themselves (invoice.status, subscription.status,
email.sent, ...) name the operator too: the console views run every action inside
`audit.services.acting_as`.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, DomainError
from audit.services import audit_record
from billing import actions, invoicing, notifications, payments, tasks
from billing.models import (
    OVERDUE,
    UNPAID,
    Dunning,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PaymentAttempt,
)
from plans.models import Subscription
from plans.services import subscription_transition

S = InvoiceStatus
# A pause is a grace agreed with a customer, not a way to forget an invoice.
MAX_PAUSE = timedelta(days=90)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why: a reason is required.", details={"field": "reason"})
    return reason


def _locked(invoice: Invoice) -> Invoice:
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("account", "subscription")
        .get(pk=invoice.pk)
    )


def invoice_retry_now(*, invoice: Invoice, reason: str, at: datetime | None = None):
    """Charge the invoice now, through the composer (billing.actions) and so the one
    collection path."""
    reason, at = _reason(reason), at or timezone.now()
    if invoice.kind != InvoiceKind.INVOICE or invoice.status not in UNPAID:
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}: nothing to collect.")
    # The attempt is committed before Stripe is called (F5), so the operator's row follows
    # the outcome in its own transaction, naming the attempt it caused.
    before = invoice.status
    attempt = actions.invoice_pay(
        account=invoice.account, invoice=invoice, trigger="operator", at=at
    ).attempt
    invoice.refresh_from_db()
    after: dict[str, object] = {"status": invoice.status}
    if attempt is not None:
        after |= {"attempt": attempt.number, "attempt_status": attempt.status}
    return audit_record(
        action="operator.retry_now", obj=invoice, before=before, after=after, reason=reason
    )


def invoice_remind_now(*, invoice: Invoice, reason: str, at: datetime | None = None):
    """Send the customer the email the schedule would send next, now: the confirmation link
    again (F2), or the failed payment's reason and what to do (F3)."""
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        invoice = _locked(invoice)
        dunning: Dunning | None
        if invoice.status == S.REQUIRES_CONFIRMATION:
            attempt = payments.confirmation_attempt(invoice=invoice)
            if attempt is None:
                raise Conflict(f"Invoice {invoice.number} has no payment waiting to confirm.")
            dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
            notifications.send(
                "confirmation_reminder",
                invoice.account,
                invoice=invoice,
                url=payments.confirmation_url(attempt),
                reminder=dunning.reminders_sent + 1,
            )
        elif invoice.status == S.PAST_DUE:
            attempt = invoice.attempts.filter(status=PaymentAttempt.Status.FAILED).last()
            dunning = Dunning.objects.filter(invoice=invoice).first()
            notifications.send(
                "payment_failed",
                invoice.account,
                invoice=invoice,
                attempt=attempt,
                next_retry_at=dunning.next_retry_at if dunning else None,
            )
        else:
            raise Conflict(f"Invoice {invoice.number} is {invoice.status}: no reminder to send.")
        return audit_record(
            action="operator.remind_now", obj=invoice, after=invoice.status, reason=reason, at=at
        )


def dunning_pause(*, invoice: Invoice, until: datetime, reason: str, at: datetime | None = None):
    """No retries, reminders or suspension for this invoice until `until`; suspension is due
    no earlier than the pause's end, so the grace is real."""
    reason, at = _reason(reason), at or timezone.now()
    if not at < until <= at + MAX_PAUSE:
        raise DomainError("A pause ends in the future, within 90 days.", details={"field": "until"})
    with transaction.atomic():
        invoice = _locked(invoice)
        if invoice.status not in OVERDUE:
            raise Conflict(f"Invoice {invoice.number} is {invoice.status}: nothing to pause.")
        dunning, _ = Dunning.objects.select_for_update().get_or_create(invoice=invoice)
        before = _schedule(dunning)
        dunning.paused_until = until
        if dunning.suspend_at is not None:
            dunning.suspend_at = max(dunning.suspend_at, until)
        dunning.save()
        return audit_record(
            action="operator.pause_dunning",
            obj=invoice,
            before=before,
            after=_schedule(dunning),
            reason=reason,
            at=at,
        )


def dunning_resume(*, invoice: Invoice, reason: str, at: datetime | None = None):
    """End a pause now: the steps that fell due during it run at the next dunning run."""
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        invoice = _locked(invoice)
        dunning = Dunning.objects.select_for_update().filter(invoice=invoice).first()
        if dunning is None or dunning.paused_until is None or dunning.paused_until <= at:
            raise Conflict(f"The reminders and retries of {invoice.number} are not paused.")
        before = _schedule(dunning)
        dunning.paused_until = None
        dunning.save(update_fields=["paused_until"])
        return audit_record(
            action="operator.resume_dunning",
            obj=invoice,
            before=before,
            after=_schedule(dunning),
            reason=reason,
            at=at,
        )


def _schedule(dunning: Dunning) -> dict:
    return {
        field: value.isoformat() if value else None
        for field in ("paused_until", "next_retry_at", "next_reminder_at", "suspend_at")
        for value in [getattr(dunning, field)]
    }


def invoice_mark_paid(*, invoice: Invoice, reference: str, reason: str, at: datetime | None = None):
    """Paid outside Stripe (a bank transfer): settled like a charge would settle it, with the
    payment's reference kept."""
    reason, at = _reason(reason), at or timezone.now()
    reference = (reference or "").strip()
    if not reference:
        raise DomainError(
            "Give the payment's reference (e.g. the bank transfer's).",
            details={"field": "reference"},
        )
    with transaction.atomic():
        invoice = _locked(invoice)
        if invoice.kind != InvoiceKind.INVOICE or invoice.status not in (
            *UNPAID,
            S.UNCOLLECTIBLE,
        ):
            raise Conflict(f"Invoice {invoice.number} is {invoice.status}: it cannot be paid.")
        invoicing.refuse_while_in_flight(invoice)
        before = invoice.status
        invoicing.invoice_settle(invoice=invoice, reason=f"paid out of band: {reference}", at=at)
        return audit_record(
            action="operator.mark_paid",
            obj=invoice,
            before=before,
            after={"status": S.PAID, "reference": reference},
            reason=reason,
            at=at,
        )


def invoice_void(*, invoice: Invoice, reason: str, at: datetime | None = None):
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        invoice = _locked(invoice)
        before = invoice.status
        invoicing.invoice_void(invoice=invoice, reason=reason, at=at)
        return audit_record(
            action="operator.void", obj=invoice, before=before, after=S.VOID, reason=reason, at=at
        )


def invoice_mark_uncollectible(*, invoice: Invoice, reason: str, at: datetime | None = None):
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        invoice = _locked(invoice)
        before = invoice.status
        invoicing.invoice_write_off(invoice=invoice, reason=reason, at=at)
        return audit_record(
            action="operator.mark_uncollectible",
            obj=invoice,
            before=before,
            after=S.UNCOLLECTIBLE,
            reason=reason,
            at=at,
        )


def invoice_credit(*, invoice: Invoice, amount_minor: int, reason: str, at: datetime | None = None):
    """A credit note (invoicing.credit_note_issue): netted on an unpaid invoice, the account's
    credit on a paid one."""
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        before = invoice.status
        note = invoicing.credit_note_issue(
            invoice=invoice, amount_minor=amount_minor, description=reason, at=at
        )
        invoice.refresh_from_db()
        return audit_record(
            action="operator.credit_note",
            obj=invoice,
            before=before,
            after={"status": invoice.status, "credit_note": note.number, "amount": amount_minor},
            reason=reason,
            at=at,
        )


def invoice_release_hold(*, invoice: Invoice, reason: str, at: datetime | None = None):
    """Approve a charge held over the spending cap (P8): the invoice becomes collectable and
    is charged by the normal path (the collection sweep, woken at once)."""
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        invoice = _locked(invoice)
        dunning = Dunning.objects.select_for_update().filter(invoice=invoice).first()
        if dunning is None or not dunning.held_reason or invoice.status not in UNPAID:
            raise Conflict(f"Invoice {invoice.number} is not held.")
        before = dunning.held_reason
        dunning.held_reason = ""
        dunning.hold_released_at = at
        dunning.save(update_fields=["held_reason", "hold_released_at"])
        entry = audit_record(
            action="operator.release_hold",
            obj=invoice,
            before={"held": before},
            after={"held": ""},
            reason=reason,
            at=at,
        )
        tasks.collect_later(invoice.pk)
        return entry


def subscription_suspend(*, subscription: Subscription, reason: str, at: datetime | None = None):
    """Suspend now, as exhausted retries would (F4); the customer is told when an unpaid
    invoice is the cause."""
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        before = Subscription.objects.get(pk=subscription.pk).status
        if before not in (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE):
            raise Conflict(f"The subscription is {before}: it cannot be suspended.")
        subscription_transition(
            subscription_id=subscription.pk,
            to=Subscription.Status.SUSPENDED,
            reason=f"by an operator: {reason}",
            at=at,
        )
        unpaid = subscription.invoices.filter(status__in=OVERDUE).order_by("issued_at").first()
        if unpaid is not None:
            notifications.send("subscription_suspended", subscription.account, invoice=unpaid)
        return audit_record(
            action="operator.suspend",
            obj=subscription,
            before=before,
            after=Subscription.Status.SUSPENDED,
            reason=reason,
            at=at,
        )


def subscription_reactivate(*, subscription: Subscription, reason: str, at: datetime | None = None):
    """Reactivate a suspended subscription; its unpaid invoices stay unpaid and collectable."""
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        before = Subscription.objects.get(pk=subscription.pk).status
        if before != Subscription.Status.SUSPENDED:
            raise Conflict(f"The subscription is {before}, not suspended.")
        subscription_transition(
            subscription_id=subscription.pk,
            to=Subscription.Status.ACTIVE,
            reason=f"by an operator: {reason}",
            at=at,
        )
        notifications.send("subscription_reactivated_by_operator", subscription.account)
        return audit_record(
            action="operator.reactivate",
            obj=subscription,
            before=before,
            after=Subscription.Status.ACTIVE,
            reason=reason,
            at=at,
        )
