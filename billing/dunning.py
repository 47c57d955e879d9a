"""Running the schedules of unpaid invoices (F2–F4): automatic retries, confirmation reminders,
suspension. The outcomes that set these schedules live in `payments`.

Each due row is claimed by a conditional update on the instant it was due, so overlapping runs
(two beat ticks, a manual `run_billing` beside the periodic one) act on it once."""

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from plans.models import Subscription
from plans.services import subscription_transition

from . import notifications, payments
from .models import OVERDUE, Dunning, InvoiceStatus

S = InvoiceStatus


def _claim(dunning: Dunning, field: str, **changes) -> bool:
    due = getattr(dunning, field)
    return bool(Dunning.objects.filter(pk=dunning.pk, **{field: due}).update(**changes))


def dunning_run(*, as_of: datetime) -> dict[str, int]:
    """Due automatic retries, confirmation reminders and suspensions; an invoice an operator
    paused is skipped until the pause ends, then its overdue steps run."""
    done = {"retries": 0, "reminders": 0, "suspensions": 0}
    due = Dunning.objects.filter(Q(paused_until__isnull=True) | Q(paused_until__lte=as_of))
    for dunning in due.filter(next_retry_at__lte=as_of):
        if not _claim(dunning, "next_retry_at", next_retry_at=None):
            continue
        try:
            attempt = payments.invoice_charge(
                invoice_id=dunning.invoice_id, trigger="automatic_retry", at=as_of
            )
        except payments.PaymentInProgress:
            continue  # someone is charging it right now; its outcome sets the next retry
        done["retries"] += attempt is not None
    for dunning in due.filter(next_reminder_at__lte=as_of).select_related("invoice__account"):
        sent = dunning.reminders_sent + 1
        requested_at = dunning.confirmation_requested_at
        # Set with next_reminder_at, by payments._needs_confirmation alone.
        assert requested_at is not None
        later = payments.REMINDERS.wait(sent + 1)
        if not _claim(
            dunning,
            "next_reminder_at",
            reminders_sent=sent,
            next_reminder_at=requested_at + later if later else None,
        ):
            continue
        attempt = payments.confirmation_attempt(invoice=dunning.invoice)
        if attempt is not None:
            # A fresh link: it is what "the link expired" is measured from (payments).
            Dunning.objects.filter(pk=dunning.pk).update(link_sent_at=timezone.now())
            notifications.send(
                "confirmation_reminder",
                dunning.invoice.account,
                invoice=dunning.invoice,
                url=payments.confirmation_url(attempt),
                reminder=sent,
            )
            done["reminders"] += 1
    for dunning in due.filter(suspend_at__lte=as_of).select_related(
        "invoice__subscription", "invoice__account"
    ):
        if not _claim(dunning, "suspend_at", suspend_at=None, next_retry_at=None):
            continue
        invoice = dunning.invoice
        subscription = invoice.subscription if invoice.status in OVERDUE else None
        # A subscription that ended (its last invoice is charged after the end) has nothing
        # left to suspend: its features are already off; the debt and its retries stand.
        if subscription is None or subscription.ended_at is not None:
            continue
        if subscription_transition(
            subscription_id=subscription.pk,
            to=Subscription.Status.SUSPENDED,
            reason=f"invoice {invoice.number} unpaid after retries",
            at=as_of,
        ):
            notifications.send("subscription_suspended", invoice.account, invoice=invoice)
            done["suspensions"] += 1
    return done
