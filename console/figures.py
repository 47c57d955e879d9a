"""Collections figures for operators: what is recurring, what is owed, and how failed payments
were recovered (and by whom)."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from django.db.models import Count, Min

from audit.models import AuditEntry
from billing import statement
from billing.models import (
    OVERDUE,
    Dunning,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PaymentAttempt,
)
from plans.models import CancelReason, ChangeStatus, Interval, ScheduledChange, Subscription
from plans.money import round_minor
from plans.terms import subscription_terms

S = InvoiceStatus
A = PaymentAttempt.Status
# Who brought the money in, from the trigger of the attempt that succeeded.
RECOVERED_BY = {
    "automatic": "automatic",
    "automatic_retry": "automatic",
    "retry": "merchant",  # Retry payment on the Billing & Usage page, or the partner API
    "upgrade": "merchant",  # an upgrade's first charge, paid at once (never a recovery)
    "restart": "merchant",  # starting again after the end (idem)
    "operator": "operator",
}


@dataclass
class RecoveryMonth:
    month: str  # "2026-11": the month of the invoice's first failed attempt
    failed: int = 0
    recovered: int = 0
    by: dict[str, int] = field(
        default_factory=lambda: {"automatic": 0, "merchant": 0, "operator": 0}
    )

    @property
    def rate_percent(self) -> int | None:
        return round(100 * self.recovered / self.failed) if self.failed else None


@dataclass
class CancelReasonCount:
    """Cancellations that gave one reason (or none), by what became of them."""

    reason: str  # the reason's words, or "Not given"
    ending: int = 0  # scheduled for the cycle's end, still undoable
    ended: int = 0  # took effect
    undone: int = 0  # the merchant kept the subscription

    @property
    def total(self) -> int:
        return self.ending + self.ended + self.undone


@dataclass
class Figures:
    mrr_minor: dict[str, int]  # per currency
    past_due_minor: dict[str, int]
    past_due_count: int
    recovery: list[RecoveryMonth]
    suspended_accounts: int
    invoices_held: int
    cancellations: list[CancelReasonCount] = field(default_factory=list)


def monthly_recurring_minor(subscription: Subscription) -> int:
    """The subscription's fees per month: a yearly fee counts for a twelfth (rounded once)."""
    terms = subscription_terms(subscription)
    fees = sum(
        fee
        for fee in [
            terms.plan.fee_minor if terms.plan else 0,
            terms.edition.fee_minor if terms.edition else 0,
            *(addon.fee_minor for addon in terms.addons),
        ]
    )
    return round_minor(Fraction(fees, 12)) if terms.interval == Interval.YEAR else fees


def collections_figures(*, now: datetime) -> Figures:
    mrr: dict[str, int] = defaultdict(int)
    paying = Subscription.objects.filter(
        status__in=[Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE],
        ended_at__isnull=True,
        started_at__lte=now,
    ).select_related("account", "plan", "edition")
    for subscription in paying:
        mrr[subscription.account.currency] += monthly_recurring_minor(subscription)
    past_due: dict[str, int] = defaultdict(int)
    unpaid = list(Invoice.objects.filter(kind=InvoiceKind.INVOICE, status__in=OVERDUE))
    # What is left on each, from the statement of account (credit notes and charges off).
    figures = statement.invoices_figures(unpaid)
    for invoice in unpaid:
        past_due[invoice.currency] += figures[invoice.pk].amount_due_minor
    return Figures(
        mrr_minor=dict(sorted(mrr.items())),
        past_due_minor=dict(sorted(past_due.items())),
        past_due_count=len(unpaid),
        recovery=recovery_by_month(),
        suspended_accounts=Subscription.objects.filter(status=Subscription.Status.SUSPENDED)
        .values("account")
        .distinct()
        .count(),
        invoices_held=Dunning.objects.filter(
            held_reason__gt="", invoice__status__in=[S.OPEN, S.PAST_DUE]
        ).count(),
        cancellations=cancellations_by_reason(),
    )


_CANCEL_STATE = {
    ChangeStatus.SCHEDULED: "ending",
    ChangeStatus.APPLIED: "ended",
    ChangeStatus.CANCELED: "undone",
}


def cancellations_by_reason() -> list[CancelReasonCount]:
    """Every cancellation merchants confirmed, counted by the reason they chose (one row per
    reason, in the order the confirmation step offers them, "Not given" last) and by what
    became of it. One grouped query over the cancellations' own rows."""
    rows = {code: CancelReasonCount(reason=str(label)) for code, label in CancelReason.choices}
    rows[""] = CancelReasonCount(reason="Not given")
    grouped = (
        ScheduledChange.objects.filter(cancel=True)
        .values_list("cancel_reason", "status")
        .annotate(n=Count("pk"))
    )
    for reason, status, n in grouped:
        row = rows[reason]
        state = _CANCEL_STATE[ChangeStatus(status)]
        setattr(row, state, getattr(row, state) + n)
    return list(rows.values())


def recovery_by_month() -> list[RecoveryMonth]:
    """Invoices with a failed charge, by the month of their first failure; recovered when
    paid since. Paid by a charge: who triggered the successful attempt. Paid without one
    (out of band, or credited in full): the operator who did it."""
    failed = (
        PaymentAttempt.objects.filter(status=A.FAILED, invoice__kind=InvoiceKind.INVOICE)
        .values("invoice")
        .annotate(first=Min("created_at"), n=Count("pk"))
    )
    first_failure = {row["invoice"]: row["first"] for row in failed}
    paid = set(
        Invoice.objects.filter(pk__in=first_failure, status=S.PAID).values_list("pk", flat=True)
    )
    winners = dict(
        PaymentAttempt.objects.filter(invoice_id__in=paid, status=A.SUCCEEDED).values_list(
            "invoice_id", "trigger"
        )
    )
    by_operator = set(
        AuditEntry.objects.filter(
            object_type="invoice",
            object_id__in=paid - winners.keys(),
            action__in=["operator.mark_paid", "operator.credit_note"],
        ).values_list("object_id", flat=True)
    )
    months: dict[str, RecoveryMonth] = {}
    for invoice_id, first in first_failure.items():
        month = months.setdefault(f"{first:%Y-%m}", RecoveryMonth(month=f"{first:%Y-%m}"))
        month.failed += 1
        if invoice_id not in paid:
            continue
        month.recovered += 1
        if invoice_id in winners:
            who = RECOVERED_BY.get(winners[invoice_id], "merchant")
        else:
            who = "operator" if invoice_id in by_operator else "merchant"
        month.by[who] += 1
    return [months[m] for m in sorted(months)]
