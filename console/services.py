"""What a billing operator can do from the console. Each action is a thin layer over the
service the automatic flows use (no second code path), with the operator's reason kept in one
audit row `operator.<action>`, written in the same transaction as the change.

`operator_action` is that frame, once: the reason, the time, the transaction, the row lock and
the audit row. Each action inside it says only what it changes and what its row says before and
after. "Retry now" is the one action outside it (see there why).

The state changes the underlying services audit themselves (invoice.status, subscription.status,
email.sent, ...) name the operator too: the console views run every action inside
`audit.services.acting_as`.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from django.db import transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.errors import Conflict, DomainError
from accounts.models import Account
from audit.models import AuditEntry
from audit.services import audit_record
from billing import (
    actions,
    invoicing,
    notifications,
    payments,
    refunds,
    shopify_billing,
    spike_guard,
    tasks,
    tax_corrections,
    ticket_disputes,
)
from billing.models import (
    OVERDUE,
    UNPAID,
    Dispute,
    DisputeDecision,
    DisputeStatus,
    Dunning,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PaymentAttempt,
    TicketDispute,
)
from billing.phrases import ticket_dispute_outcome_words
from metering import selectors as metering_selectors
from metering.models import UsageAnomaly, UsageHold
from plans.models import Subscription
from plans.services import subscription_transition

S = InvoiceStatus
# A pause is a grace agreed with a customer, not a way to forget an invoice.
MAX_PAUSE = timedelta(days=90)

Row = TypeVar("Row", Invoice, Subscription, TicketDispute, UsageAnomaly, UsageHold)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why: a reason is required.", details={"field": "reason"})
    return reason


def _locked(row: Row) -> Row:
    if isinstance(row, UsageAnomaly | UsageHold):
        return type(row).objects.select_for_update(of=("self",)).get(pk=row.pk)
    if isinstance(row, TicketDispute):
        return (
            TicketDispute.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=row.pk)
        )
    if isinstance(row, Invoice):
        return (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account", "subscription")
            .get(pk=row.pk)
        )
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("account")
        .get(pk=row.pk)
    )


@dataclass
class Change(Generic[Row]):
    """One operator action under way: the locked row it acts on, the reason and time it was
    given, and what its audit row will say (`before`, `after`: set by the action)."""

    row: Row
    reason: str
    at: datetime
    before: object = None
    after: object = None
    entry: AuditEntry = field(init=False)  # the audit row, once the block has succeeded


@contextlib.contextmanager
def operator_action(
    action: str, row: Row, *, reason: str, at: datetime | None
) -> Iterator[Change[Row]]:
    """The frame of every console action but "Retry now". The reason is checked before
    anything is touched; then, in one transaction, the row is locked and read again, so the
    state the action checks is the one it changes even when the dunning run, a webhook or
    another operator acts at the same moment; the block makes its change; and the audit row
    `action` is written. Whatever the block raises rolls its change back with it: never a
    change without its operator's row, never a row for a change that did not happen."""
    change = Change(row=row, reason=_reason(reason), at=at or timezone.now())
    with transaction.atomic():
        change.row = _locked(row)
        yield change
        change.entry = audit_record(
            action=action,
            obj=change.row,
            before=change.before,
            after=change.after,
            reason=change.reason,
            at=change.at,
            label=_label(change.row),
        )


def _label(row: Row) -> str | None:
    """An invoice's row is labelled by its number (None: audit's default); a contested
    ticket by the ticket, a spike by its meter and day, a loop's holds by their first one."""
    if isinstance(row, TicketDispute):
        return f"ticket {row.ticket}"
    if isinstance(row, UsageAnomaly):
        return f"{row.meter} {row.day.isoformat()}"
    if isinstance(row, UsageHold):
        return f"loop holds from {row.subject_kind} {row.subject}"
    return None


def invoice_retry_now(*, invoice: Invoice, reason: str, at: datetime | None = None) -> AuditEntry:
    """Charge the invoice now, through the composer (billing.actions) and so the one
    collection path."""
    # The one action outside `operator_action`. The charge path commits the payment attempt
    # before it calls Stripe (F5: a crash or a timeout mid-call leaves a recorded attempt to
    # reconcile, never a charge nobody knows of), so the charge cannot run inside the
    # wrapper's transaction and row lock. The operator's row follows the outcome instead, in a
    # transaction of its own, naming the attempt it caused; a charge that cannot start (no
    # card, a payment in flight) raises before it and leaves no row, as a refused action does.
    reason, at = _reason(reason), at or timezone.now()
    if invoice.kind != InvoiceKind.INVOICE or invoice.status not in UNPAID:
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}: nothing to collect.")
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


def invoice_remind_now(*, invoice: Invoice, reason: str, at: datetime | None = None) -> AuditEntry:
    """Send the customer the email the schedule would send next, now: the confirmation link
    again (F2), or the failed payment's reason and what to do (F3)."""
    with operator_action("operator.remind_now", invoice, reason=reason, at=at) as change:
        invoice = change.row
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
        change.after = invoice.status
    return change.entry


def dunning_pause(
    *, invoice: Invoice, until: datetime, reason: str, at: datetime | None = None
) -> AuditEntry:
    """No retries, reminders or suspension for this invoice until `until`; suspension is due
    no earlier than the pause's end, so the grace is real."""
    with operator_action("operator.pause_dunning", invoice, reason=reason, at=at) as change:
        if not change.at < until <= change.at + MAX_PAUSE:
            raise DomainError(
                "A pause ends in the future, within 90 days.", details={"field": "until"}
            )
        invoice = change.row
        if invoice.status not in OVERDUE:
            raise Conflict(f"Invoice {invoice.number} is {invoice.status}: nothing to pause.")
        dunning, _ = Dunning.objects.select_for_update().get_or_create(invoice=invoice)
        change.before = _schedule(dunning)
        dunning.paused_until = until
        if dunning.suspend_at is not None:
            dunning.suspend_at = max(dunning.suspend_at, until)
        dunning.save()
        change.after = _schedule(dunning)
    return change.entry


def dunning_resume(*, invoice: Invoice, reason: str, at: datetime | None = None) -> AuditEntry:
    """End a pause now: the steps that fell due during it run at the next dunning run."""
    with operator_action("operator.resume_dunning", invoice, reason=reason, at=at) as change:
        invoice = change.row
        dunning = Dunning.objects.select_for_update().filter(invoice=invoice).first()
        if dunning is None or dunning.paused_until is None or dunning.paused_until <= change.at:
            raise Conflict(f"The reminders and retries of {invoice.number} are not paused.")
        change.before = _schedule(dunning)
        dunning.paused_until = None
        dunning.save(update_fields=["paused_until"])
        change.after = _schedule(dunning)
    return change.entry


def _schedule(dunning: Dunning) -> dict:
    return {
        field: value.isoformat() if value else None
        for field in ("paused_until", "next_retry_at", "next_reminder_at", "suspend_at")
        for value in [getattr(dunning, field)]
    }


def invoice_mark_paid(
    *, invoice: Invoice, reference: str, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Paid outside Stripe (a bank transfer): settled like a charge would settle it, with the
    payment's reference kept."""
    with operator_action("operator.mark_paid", invoice, reason=reason, at=at) as change:
        reference = (reference or "").strip()
        if not reference:
            raise DomainError(
                "Give the payment's reference (e.g. the bank transfer's).",
                details={"field": "reference"},
            )
        invoice = change.row
        if invoice.kind != InvoiceKind.INVOICE or invoice.status not in (
            *UNPAID,
            S.UNCOLLECTIBLE,
            S.DISPUTED_LOST,
        ):
            raise Conflict(f"Invoice {invoice.number} is {invoice.status}: it cannot be paid.")
        invoicing.refuse_while_in_flight(invoice)
        change.before = invoice.status
        invoicing.invoice_settle(
            invoice=invoice, reason=f"paid out of band: {reference}", at=change.at
        )
        change.after = {"status": S.PAID, "reference": reference}
    return change.entry


def invoice_void(*, invoice: Invoice, reason: str, at: datetime | None = None) -> AuditEntry:
    """Cancel the invoice: nothing is owed on it any more; its schedules stop and a suspension
    it caused is lifted."""
    return _collection_end(
        "operator.void", invoice, reason=reason, at=at, end=invoicing.invoice_void, to=S.VOID
    )


def invoice_mark_uncollectible(
    *, invoice: Invoice, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Stop collecting: no more retries, reminders or suspension from this invoice; the
    subscription keeps its state, and a later payment out of band still settles it."""
    return _collection_end(
        "operator.mark_uncollectible",
        invoice,
        reason=reason,
        at=at,
        end=invoicing.invoice_write_off,
        to=S.UNCOLLECTIBLE,
    )


def _collection_end(
    action: str,
    invoice: Invoice,
    *,
    reason: str,
    at: datetime | None,
    end: Callable[..., None],
    to: str,
) -> AuditEntry:
    """Void and write-off alike: invoicing's service moves the status (and stops the
    schedules); the operator's row says from which status to which."""
    with operator_action(action, invoice, reason=reason, at=at) as change:
        change.before = change.row.status
        end(invoice=change.row, reason=change.reason, at=change.at)
        change.after = to
    return change.entry


def invoice_credit(
    *,
    invoice: Invoice,
    amount_minor: int,
    description: str,
    reason: str,
    at: datetime | None = None,
    refund_minor: int = 0,
) -> AuditEntry:
    """A credit note (invoicing.credit_note_issue): netted on an unpaid invoice; on a paid one
    `refund_minor` (tax included) goes back to the card and the rest is the account's credit.
    `description` is printed on it for the customer; `reason` is the operator's, kept in the
    audit row only."""
    # What Stripe says is refundable is read before the action's transaction: a call to Stripe
    # never holds the invoice's lock (the refund itself is sent after the commit).
    charges = refunds.invoice_charges_refundable(invoice=invoice) if refund_minor else None
    with operator_action("operator.credit_note", invoice, reason=reason, at=at) as change:
        invoice = change.row
        change.before = invoice.status
        note = invoicing.credit_note_issue(
            invoice=invoice,
            amount_minor=amount_minor,
            description=description,
            at=change.at,
            refund_minor=refund_minor,
            charges=charges,
        )
        invoice.refresh_from_db()
        change.after = {
            "status": invoice.status,
            "credit_note": note.number,
            "amount": amount_minor,
            "description": note.description,
        }
        if refund_minor:
            change.after["refund_to_card"] = refund_minor
    return change.entry


def invoice_vat_give_back(
    *, invoice: Invoice, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Give back the VAT an invoice charged because VIES had not confirmed the buyer's VAT id,
    now that it has (billing.tax_corrections.vat_correction_issue): a credit note of the
    invoice's tax, netted on an unpaid invoice, the account's credit on a paid one."""
    with operator_action("operator.vat_given_back", invoice, reason=reason, at=at) as change:
        invoice = change.row
        change.before = {"status": invoice.status, "tax": invoice.tax_minor}
        # The correction re-checks everything under its own lock (id still the one invoiced,
        # VIES's answer valid, not corrected already) and refuses with a Conflict in words.
        note = tax_corrections.vat_correction_issue(
            invoice=invoice, reason=change.reason, at=change.at
        )
        invoice.refresh_from_db()
        change.after = {
            "status": invoice.status,
            "credit_note": note.number,
            "tax_given_back": -note.tax_minor,
        }
    return change.entry


def invoice_release_hold(
    *, invoice: Invoice, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Approve a charge held over the spending cap (P8): the invoice becomes collectable and
    is charged by the normal path (the collection sweep, woken at once)."""
    with operator_action("operator.release_hold", invoice, reason=reason, at=at) as change:
        invoice = change.row
        dunning = Dunning.objects.select_for_update().filter(invoice=invoice).first()
        if dunning is None or not dunning.held_reason or invoice.status not in UNPAID:
            raise Conflict(f"Invoice {invoice.number} is not held.")
        change.before = {"held": dunning.held_reason}
        dunning.held_reason = ""
        dunning.hold_released_at = change.at
        dunning.save(update_fields=["held_reason", "hold_released_at"])
        change.after = {"held": ""}
        tasks.collect_later(invoice.pk)  # after the commit, like every task
    return change.entry


def dispute_decide(
    *, dispute: Dispute, decision: str, reason: str, at: datetime | None = None
) -> AuditEntry:
    """An operator's decision on an account whose card dispute was lost (its invoice is owed
    again and nothing charges it): ask the merchant for another card (the invoice becomes past
    due without a retry schedule: offered to the merchant, never swept), suspend the
    subscription, or write the invoice off. Once per dispute; each through the service the
    automatic flows use."""
    if decision not in (d for d in DisputeDecision.values if d):
        raise DomainError("Choose a decision.", details={"field": "decision"})
    with operator_action("operator.dispute_decided", dispute.invoice, reason=reason, at=at) as c:
        invoice = c.row
        row = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if row.status != DisputeStatus.LOST or row.decision:
            raise Conflict(
                f"Dispute {row.stripe_dispute_id} is {row.get_status_display()}"
                + (f", already decided ({row.get_decision_display()})" if row.decision else "")
                + ": there is nothing to decide."
            )
        if decision == DisputeDecision.SUSPEND:
            _dispute_suspend(invoice, c)
        elif invoice.status != S.DISPUTED_LOST:
            raise Conflict(f"Invoice {invoice.number} is {invoice.get_status_display()} now.")
        elif decision == DisputeDecision.ANOTHER_CARD:
            invoicing.invoice_transition(
                invoice=invoice, to=S.PAST_DUE, reason=f"another card asked for: {c.reason}"
            )
            notifications.send("dispute_card_requested", invoice.account, invoice=invoice)
        else:
            invoicing.invoice_write_off(invoice=invoice, reason=c.reason, at=c.at)
        Dispute.objects.filter(pk=row.pk).update(decision=decision, decided_at=c.at)
        c.before = {"dispute": row.stripe_dispute_id, "invoice": S.DISPUTED_LOST}
        c.after = {"decision": decision, "invoice": invoice.status}
    return c.entry


def ticket_dispute_decide(
    *, dispute: TicketDispute, accept: bool, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Decide a ticket the merchant contested, through the service the automatic acceptance
    uses (billing.ticket_disputes): accepted, the ticket is excluded from billing (and credited
    when its invoice charged for it); rejected, it stays billed and `reason` is what the
    merchant reads. Either way the merchant is emailed. Once per dispute: one decided meanwhile
    (by another operator, or automatically) is refused."""
    action = "operator.ticket_dispute_accepted" if accept else "operator.ticket_dispute_rejected"
    with operator_action(action, dispute, reason=reason, at=at) as change:
        change.before = {"ticket": change.row.ticket, "status": change.row.status}
        if accept:
            decided = ticket_disputes.ticket_dispute_accept(dispute=change.row, at=change.at)
        else:
            decided = ticket_disputes.ticket_dispute_reject(
                dispute=change.row, decision=change.reason, at=change.at
            )
        change.row = decided
        change.after = {
            "ticket": decided.ticket,
            "status": decided.status,
            "outcome": ticket_dispute_outcome_words(decided),
            "credit_note": decided.credit_note.number if decided.credit_note else None,
        }
    return change.entry


def held_anomaly_decide(
    *, anomaly: UsageAnomaly, release: bool, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Release (billed: on its period, or as late usage on the next invoice when its period
    closed) or exclude (never billed) a spike's held units, through the merchant's own
    service (billing.spike_guard). Once: a spike decided meanwhile (by the merchant, another
    operator, or after 14 days) is refused."""
    action = "operator.usage_released" if release else "operator.usage_excluded"
    with operator_action(action, anomaly, reason=reason, at=at) as change:
        change.before = {"status": change.row.status, "held": change.row.held}
        decide = spike_guard.anomaly_release if release else spike_guard.anomaly_exclude
        change.row = decide(anomaly=change.row, at=change.at)
        change.after = {
            "status": change.row.status,
            "held": change.before["held"],
            "meter": change.row.meter,
            "day": change.row.day.isoformat(),
        }
    return change.entry


def held_loop_decide(
    *, hold: UsageHold, release: bool, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Release or exclude a suspected loop's held tickets: every active loop hold of the
    account with this hold's reason (one burst), through billing.spike_guard. Refused once
    they were decided."""
    action = "operator.usage_released" if release else "operator.usage_excluded"
    with operator_action(action, hold, reason=reason, at=at) as change:
        holds = metering_selectors.loop_hold_group(
            account_id=change.row.account_id, hold_id=change.row.pk
        )
        if not holds:
            raise Conflict("These held tickets were decided already.", code="decided")
        change.before = {"status": "held", "held": len(holds), "reason": change.row.reason}
        decide = spike_guard.holds_release if release else spike_guard.holds_exclude
        decided = decide(holds=holds, at=change.at)
        change.after = {
            "status": "released" if release else "excluded",
            "held": len(decided),
            "tickets": [h.subject for h in decided[:20]],
        }
    return change.entry


def _dispute_suspend(invoice: Invoice, change: Change[Invoice]) -> None:
    subscription = invoice.subscription
    if subscription is None or subscription.status not in (
        Subscription.Status.ACTIVE,
        Subscription.Status.PAST_DUE,
    ):
        state = subscription.status if subscription else "gone"
        raise Conflict(f"The subscription is {state}: it cannot be suspended.")
    subscription_transition(
        subscription_id=subscription.pk,
        to=Subscription.Status.SUSPENDED,
        reason=f"card dispute lost on {invoice.number}: {change.reason}",
        at=change.at,
    )
    notifications.send("subscription_suspended", invoice.account, invoice=invoice)


def subscription_suspend(
    *, subscription: Subscription, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Suspend now, as exhausted retries would (F4); the customer is told when an unpaid
    invoice is the cause."""
    with operator_action("operator.suspend", subscription, reason=reason, at=at) as change:
        change.before = change.row.status
        if change.before not in (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE):
            raise Conflict(f"The subscription is {change.before}: it cannot be suspended.")
        subscription_transition(
            subscription_id=subscription.pk,
            to=Subscription.Status.SUSPENDED,
            reason=f"by an operator: {change.reason}",
            at=change.at,
        )
        unpaid = subscription.invoices.filter(status__in=OVERDUE).order_by("issued_at").first()
        if unpaid is not None:
            notifications.send("subscription_suspended", change.row.account, invoice=unpaid)
        change.after = Subscription.Status.SUSPENDED
    return change.entry


def subscription_reactivate(
    *, subscription: Subscription, reason: str, at: datetime | None = None
) -> AuditEntry:
    """Reactivate a suspended subscription; its unpaid invoices stay unpaid and collectable."""
    with operator_action("operator.reactivate", subscription, reason=reason, at=at) as change:
        change.before = change.row.status
        if change.before != Subscription.Status.SUSPENDED:
            raise Conflict(f"The subscription is {change.before}, not suspended.")
        subscription_transition(
            subscription_id=subscription.pk,
            to=Subscription.Status.ACTIVE,
            reason=f"by an operator: {change.reason}",
            at=change.at,
        )
        notifications.send("subscription_reactivated_by_operator", change.row.account)
        change.after = Subscription.Status.ACTIVE
    return change.entry


def member_logins_unlock(*, account: Account, reason: str, at: datetime | None = None):
    """Let the account's members who are locked out by wrong passwords (django-axes) log in at
    once, instead of after the cool-off."""
    reason, at = _reason(reason), at or timezone.now()
    with transaction.atomic():
        unlocked = account_services.member_logins_unlock(account=account)
        if not unlocked:
            raise Conflict("No member of this account is locked out: there is nothing to unlock.")
        return audit_record(
            action="operator.unlock_logins",
            obj=account,
            account_id=account.pk,
            label=account.slug,
            after=unlocked,
            reason=reason,
            at=at,
        )


def account_channel_change(
    *,
    account: Account,
    to: str,
    reason: str,
    shop_domain: str = "",
    access_token: str = "",
) -> AuditEntry:
    """Move the account to the other billing channel (docs/shopify.md, "Changing channel"):
    billing.shopify_billing decides and records it (refused while an invoice is unpaid); the
    operator's row names the move (never the token)."""
    reason = _reason(reason)
    before = account.billing_channel
    shopify_billing.account_channel_change(
        account=account,
        to=to,
        reason=reason,
        shop_domain=shop_domain or None,
        access_token=access_token or None,
    )
    after: dict[str, object] = {"billing_channel": to}
    if shop_domain:
        after["shop_domain"] = shop_domain
    return audit_record(
        action="operator.channel_change",
        obj=account,
        account_id=account.pk,
        label=account.slug,
        before=before,
        after=after,
        reason=reason,
    )
