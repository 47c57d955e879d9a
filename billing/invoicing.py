"""Issuing invoices and credit notes: numbers without gaps, immutable once final, every status
move checked and audited, never a total below zero.

An issued, unpaid invoice is its own outbox row: it is committed `open` in the transaction that
issues it, and `payments.collectable_invoice_ids` sweeps whatever is chargeable and not in
flight, whichever path issued it (start, close, upgrade, operator)."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, DomainError
from accounts.models import Account
from audit.bulk import copy_insert, copy_rows
from audit.services import audit_entry, audit_record_many
from audit.transitions import status_transition
from outbox import services as outbox
from plans import pricing
from plans.models import Subscription
from plans.money import format_money
from plans.services import subscription_transition

from . import notifications, phrases, refunds, statement, taxing
from .models import (
    OVERDUE,
    AccountCredit,
    CreditUse,
    Dunning,
    Invoice,
    InvoiceCounter,
    InvoiceKind,
    InvoiceLine,
    InvoiceReason,
    InvoiceStatus,
    InvoiceStatusChange,
    PaymentAttempt,
)

logger = logging.getLogger(__name__)

S = InvoiceStatus
# Which status may follow which (F1–F5): a void invoice never moves again; a paid one only when
# the card's bank takes its money back (a lost card dispute, billing.disputes). From there an
# operator decides: another card (past due without a retry schedule: offered to the merchant
# for a card they choose, never charged by a sweep), a write-off (uncollectible), a payment
# out of band (paid); a dispute Stripe reverses pays it again.
TRANSITIONS: dict[str, set[str]] = {
    S.DRAFT: {S.OPEN, S.PAID, S.VOID},
    S.OPEN: {S.PAID, S.REQUIRES_CONFIRMATION, S.PAST_DUE, S.VOID, S.UNCOLLECTIBLE},
    S.REQUIRES_CONFIRMATION: {S.PAID, S.PAST_DUE, S.VOID, S.UNCOLLECTIBLE},
    S.PAST_DUE: {S.PAID, S.REQUIRES_CONFIRMATION, S.VOID, S.UNCOLLECTIBLE},
    S.UNCOLLECTIBLE: {S.PAID},
    S.PAID: {S.DISPUTED_LOST},
    S.DISPUTED_LOST: {S.PAST_DUE, S.PAID, S.UNCOLLECTIBLE},
    S.VOID: set(),
}


class InvalidTransition(Conflict):
    code = "invalid_transition"


def invoice_transition(
    *, invoice: Invoice, to: str, reason: str = "", at: datetime | None = None
) -> Invoice:
    """Move an invoice to another status, checked against TRANSITIONS, locked and audited."""
    at = at or timezone.now()

    def refuse(locked: Invoice) -> InvalidTransition:
        return InvalidTransition(
            f"Invoice {locked} is {locked.status}; it cannot become {to}.",
            details={"from": locked.status, "to": to},
        )

    def on_change(locked: Invoice, before: str) -> None:
        InvoiceStatusChange.objects.create(
            invoice=locked, from_status=before, to_status=to, reason=reason, at=at
        )
        outbox.invoice_status_emit(locked)

    locked, _ = status_transition(
        model=Invoice,
        pk=invoice.pk,
        to=to,
        allowed=TRANSITIONS,
        action="invoice.status",
        reason=reason,
        at=at,
        refuse=refuse,
        on_change=on_change,
    )
    invoice.status = to
    return locked


def _take_numbers(year: int, count: int) -> list[str]:
    """The year's next `count` invoice numbers. The counter row stays locked until the
    caller's transaction ends, so numbers are taken in commit order and a rollback leaves no
    gap."""
    InvoiceCounter.objects.bulk_create([InvoiceCounter(year=year)], ignore_conflicts=True)
    counter = InvoiceCounter.objects.select_for_update().get(year=year)
    first = counter.last_number + 1
    counter.last_number += count
    counter.save(update_fields=["last_number"])
    return [f"{year}-{n:06d}" for n in range(first, first + count)]


@dataclass
class InvoiceDraft:
    """An invoice to issue: what plans.pricing produced for one subscription and period."""

    subscription: Subscription | None
    account_id: int
    currency: str
    reason: str
    period: pricing.Period
    lines: Sequence[pricing.Line]
    kind: str = InvoiceKind.INVOICE
    credited: Invoice | None = None
    note: str = ""
    description: str = ""  # a credit note's words for the customer
    # A credit note's tax, from its invoice's frozen decision; an invoice's is decided at issue.
    tax: taxing.InvoiceTax | None = None


def invoices_issue(*, drafts: Sequence[InvoiceDraft], at: datetime) -> list[Invoice]:
    """Write invoices with their lines, final at once: numbered, immutable (F5), audited.

    An invoice with nothing to pay is settled as it is issued; a credit note stays open until
    it is refunded or used. Bulk writes: closing thousands of periods is a few statements."""
    if not drafts:
        return []
    taxes = _taxes(drafts, at)
    # The drafts' own lines are the taxable ones; account credit comes after tax (settlement).
    taxable = [len(draft.lines) for draft in drafts]
    carried, uses = _apply_credits(drafts, [tax.breakdown.tax_minor for tax in taxes])
    numbers = _take_numbers(at.year, len(drafts))
    invoices = []
    for draft, number, tax in zip(drafts, numbers, taxes, strict=True):
        total = pricing.invoice_total(draft.lines) + tax.breakdown.tax_minor
        settled = draft.kind == InvoiceKind.INVOICE and total == 0
        invoices.append(
            Invoice(
                account_id=draft.account_id,
                subscription=draft.subscription,
                kind=draft.kind,
                reason=draft.reason,
                currency=draft.currency,
                period_start=draft.period.start,
                period_end=draft.period.end,
                total_minor=total,
                credited_invoice=draft.credited,
                note=draft.note,
                description=draft.description,
                number=number,
                issued_at=at,
                status=S.PAID if settled else S.OPEN,
                **tax.fields(),
            )
        )
    copy_insert(invoices)
    AccountCredit.objects.bulk_create(
        [
            AccountCredit(
                account_id=invoice.account_id,
                currency=invoice.currency,
                amount_minor=amount,
                remaining_minor=amount,
                source=invoice,
                description=f"Corrections on invoice {invoice.number}",
                created_at=at,
            )
            for invoice, amount in zip(invoices, carried, strict=True)
            if amount
        ]
    )
    line_fields = (
        "invoice_id",
        "position",
        "kind",
        "description",
        "meter",
        "quantity",
        "unit_price_minor",
        "amount_minor",
        "rules",
        "period_start",
        "period_end",
        "is_settlement",
    )
    positions = [
        (invoice.pk, position, line, position > count)
        for invoice, draft, count in zip(invoices, drafts, taxable, strict=True)
        for position, line in enumerate(draft.lines, start=1)
    ]
    line_ids = copy_rows(
        InvoiceLine,
        line_fields,
        [
            (
                invoice_id,
                position,
                line.kind,
                line.description,
                line.meter or "",
                line.quantity,
                line.unit_price_minor,
                line.amount_minor,
                list(line.rules),
                line.period_start,
                line.period_end,
                settlement,
            )
            for invoice_id, position, line, settlement in positions
        ],
    )
    if uses:
        # Link each use to its invoice and credit line, by the draft's index and the line's
        # position (the lines' ids came back in their order).
        by_position = {
            (invoice_id, position): line_id
            for (invoice_id, position, _, _), line_id in zip(positions, line_ids, strict=True)
        }
        CreditUse.objects.bulk_create(
            [
                CreditUse(
                    credit=use.credit,
                    invoice=invoices[use.draft],
                    line_id=by_position[(invoices[use.draft].pk, use.position)],
                    amount_minor=use.amount_minor,
                    created_at=at,
                )
                for use in uses
            ]
        )
    copy_rows(
        InvoiceStatusChange,
        ("invoice_id", "from_status", "to_status", "at", "reason"),
        [
            (
                invoice.pk,
                S.DRAFT,
                invoice.status,
                at,
                "nothing to pay" if invoice.status == S.PAID else "issued",
            )
            for invoice in invoices
        ],
    )
    outbox.invoices_issued_emit(invoices)
    audit_record_many(
        audit_entry(action="invoice.issued", obj=i, before=S.DRAFT, after=i.status, at=at)
        for i in invoices
    )
    return invoices


def _taxes(drafts: Sequence[InvoiceDraft], at: datetime) -> list[taxing.InvoiceTax]:
    """Each draft's tax: a credit note brings its own; invoices are decided here, at issue,
    with the buyer's identity as it stands (one query for all the accounts)."""
    deciding = [draft for draft in drafts if draft.tax is None]
    # The callers mostly hold the subscription with its account (select_related): read only
    # the accounts they do not.
    accounts = {
        draft.account_id: draft.subscription.account
        for draft in deciding
        if draft.subscription is not None and Subscription.account.is_cached(draft.subscription)
    }
    missing = {draft.account_id for draft in deciding} - set(accounts)
    if missing:
        accounts |= Account.objects.in_bulk(missing)
    decided = iter(
        taxing.invoices_tax(
            accounts=accounts,
            drafts=[
                (draft.account_id, [line.amount_minor for line in draft.lines])
                for draft in deciding
            ],
            on=at.astimezone(UTC).date(),
        )
    )
    return [draft.tax if draft.tax is not None else next(decided) for draft in drafts]


@dataclass(frozen=True)
class _PendingUse:
    """Credit spent on a draft, written as a CreditUse once the draft's lines exist."""

    draft: int  # index in the drafts
    position: int  # of the credit line in the draft's lines (1-based, as issued)
    credit: AccountCredit
    amount_minor: int


def _apply_credits(
    drafts: Sequence[InvoiceDraft], taxes_minor: Sequence[int]
) -> tuple[list[int], list[_PendingUse]]:
    """Net the accounts' open credits against these invoices (their totals tax included),
    oldest credit first, and carry any negative total (a late correction larger than the
    period's charges, F6) to the account's credit instead: an invoice is never below zero.
    Returns the amount carried per draft and the credit spent, for the caller to record in the
    same transaction. The credits are locked, so two closes cannot spend one credit twice."""
    carried = [0] * len(drafts)
    pending: list[_PendingUse] = []
    invoices = [i for i, d in enumerate(drafts) if d.kind == InvoiceKind.INVOICE]
    if not invoices:
        return carried, pending
    credits: dict[tuple[int, str], list[AccountCredit]] = {}
    for credit in (
        AccountCredit.objects.select_for_update()
        .select_related("source")
        .filter(
            account_id__any=list({drafts[i].account_id for i in invoices}), remaining_minor__gt=0
        )
        .order_by("created_at", "pk")
    ):
        credits.setdefault((credit.account_id, credit.currency), []).append(credit)
    spent = []
    for i in invoices:
        draft = drafts[i]
        lines = list(draft.lines)
        total = pricing.invoice_total(lines) + taxes_minor[i]
        for credit in credits.get((draft.account_id, draft.currency), []):
            if total <= 0:
                break
            use = min(total, credit.remaining_minor)
            if use <= 0:
                continue
            lines.append(
                pricing.credit_line(
                    amount_minor=use,
                    description=statement.credit_use_description(
                        # The source is an issued credit note, so it has a number.
                        source_number=credit.source.number or "",
                        description=credit.description,
                    ),
                    period=draft.period,
                )
            )
            pending.append(_PendingUse(i, len(lines), credit, use))
            credit.remaining_minor -= use
            spent.append(credit)
            total -= use
        if total < 0:
            lines.append(
                pricing.credit_line(
                    amount_minor=-total,
                    description="Credit carried to your next invoice",
                    period=draft.period,
                    carried=True,
                )
            )
            carried[i] = -total
        draft.lines = lines
    if spent:
        AccountCredit.objects.bulk_update(set(spent), ["remaining_minor"])
        for note in {c.source for c in spent if c.remaining_minor == 0}:
            if note.kind == InvoiceKind.CREDIT_NOTE and note.status == S.OPEN:
                invoice_transition(invoice=note, to=S.PAID, reason="credit used")
    return carried, pending


def invoice_issue(*, at: datetime, **draft) -> Invoice:
    """Issue one invoice (see invoices_issue)."""
    return invoices_issue(drafts=[InvoiceDraft(**draft)], at=at)[0]


def credit_note_issue(
    *,
    invoice: Invoice,
    amount_minor: int,
    description: str,
    at: datetime | None = None,
    refund_minor: int = 0,
    charges: list[refunds.Charge] | None = None,
) -> Invoice:
    """A correction of a final invoice: a numbered credit note, never an edit (F5).

    `description` is what the customer reads on it (its line, its PDF, the account credit it
    may become); the operator's reason is the caller's to keep (the audit log). The note covers
    what the credited invoice covers: its line's period runs from the first day of the
    credited lines to the end of the last, never the period under way.

    `amount_minor` is what is credited before tax; the note gives back the invoice's tax in
    proportion, from its frozen decision (docs/tax.md), so its total is larger when the
    invoice charged tax.

    On an unpaid invoice it is netted at once: the next charge asks for what is left, and an
    invoice credited in full is settled without a charge. On a paid invoice it becomes the
    account's credit, taken off its next invoices, except `refund_minor` (tax included, at
    most the note's total): that part goes back to the card (billing.refunds), latest charge
    first, capped by what Stripe says is still refundable and by what we charged by card less
    earlier refunds. `charges` is what Stripe said, read by a caller that holds a transaction
    already; otherwise it is read here, before this function's own (never under a lock)."""
    at = at or timezone.now()
    if refund_minor < 0:
        raise DomainError("A refund is a positive amount.", details={"field": "refund_minor"})
    if refund_minor and invoice.status != S.PAID:
        raise Conflict(
            f"Invoice {invoice.number} is {invoice.status}: only a paid invoice's money can go "
            "back to the card (a credit note on an unpaid one is taken off what it asks).",
            code="not_refundable",
        )
    if refund_minor and charges is None:
        charges = refunds.invoice_charges_refundable(invoice=invoice)
    description = " ".join(description.split())[:300]
    if not description:
        raise DomainError(
            "Say what the credit is for, in the customer's words: it is printed on the "
            "credit note.",
            details={"field": "description"},
        )
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if not invoice.is_final or invoice.kind != InvoiceKind.INVOICE:
            raise Conflict("Only a final invoice can be credited.")
        in_flight = invoice.attempts.filter(status__in=["created", "sending", "unknown"])
        if invoice.status == S.REQUIRES_CONFIRMATION or in_flight.exists():
            raise Conflict(
                f"A payment of invoice {invoice.number} is in progress or waits for the "
                "customer's confirmation: credit it once that payment is settled.",
                code="payment_in_progress",
            )
        notes = Invoice.objects.filter(credited_invoice=invoice)
        credited_subtotal = -sum(notes.values_list("subtotal_minor", flat=True))
        credited_total = -sum(notes.values_list("total_minor", flat=True))
        room = taxing.credit_note_room(
            invoice=invoice,
            credited_subtotal_minor=credited_subtotal,
            credited_total_minor=credited_total,
            tax_corrected=notes.filter(taxing.TAX_CORRECTED).exists(),
        )
        if not 0 < amount_minor <= room:
            raise Conflict(
                f"A credit note takes between 1 and {room} (minor units, before tax): at most "
                f"{format_money(room, invoice.currency)} of invoice {invoice.number} is left "
                "to credit, before tax.",
                code="credit_too_large" if amount_minor > 0 else "conflict",
                details={"amount_minor": amount_minor, "most": room},
            )
        start, end = phrases.covers_span(phrases.invoice_covers(invoice))
        period = pricing.Period(start=start, end=end)
        line = pricing.credit_line(
            amount_minor=amount_minor, description=description, period=period
        )
        tax = taxing.credit_note_tax_for(
            invoice=invoice,
            credited_before_minor=credited_subtotal,
            amount_minor=amount_minor,
            tax_corrected=notes.filter(taxing.TAX_CORRECTED).exists(),
        )
        note = invoice_issue(
            subscription=invoice.subscription,
            account_id=invoice.account_id,
            currency=invoice.currency,
            reason=InvoiceReason.CORRECTION,
            period=period,
            lines=[line],
            at=at,
            kind=InvoiceKind.CREDIT_NOTE,
            credited=invoice,
            note=f"Credit note for invoice {invoice.number}.",
            description=description,
            tax=tax,
        )
        if refund_minor:
            if invoice.status != S.PAID:  # re-checked under the lock
                raise Conflict(
                    f"Invoice {invoice.number} is {invoice.status}: only a paid invoice's money "
                    "can go back to the card.",
                    code="not_refundable",
                )
            if refund_minor > -note.total_minor:
                raise refunds.RefundTooLarge(
                    f"The refund ({format_money(refund_minor, invoice.currency)}) is more than "
                    "the credit note's total, tax included "
                    f"({format_money(-note.total_minor, invoice.currency)}).",
                    details={"refund_minor": refund_minor, "most": -note.total_minor},
                )
            refunds.refunds_create(
                note=note, amount_minor=refund_minor, charges=charges or [], at=at
            )
        credit_note_apply(invoice=invoice, note=note, at=at, refund_minor=refund_minor)
        return note


def credit_note_apply(
    *, invoice: Invoice, note: Invoice, at: datetime, refund_minor: int = 0
) -> None:
    """What a credit note does to its invoice's money: netted on an unpaid invoice (settling
    it when nothing is left), the account's credit on a paid one, less `refund_minor`, which
    goes back to the card (billing.refunds). The caller holds the invoice's lock."""
    if invoice.status in (S.OPEN, S.PAST_DUE):
        invoice_transition(
            invoice=note, to=S.PAID, reason=f"netted on invoice {invoice.number}", at=at
        )
        if amount_due(invoice) <= 0:
            invoice_settle(invoice=invoice, reason=f"credited by {note.number}", at=at)
    elif invoice.status == S.PAID:
        # What was paid comes back, tax included: the note gave the tax back already, so
        # the credit is spent after tax on the next invoices (a settlement, not a price).
        credit = -note.total_minor - refund_minor
        if credit > 0:
            AccountCredit.objects.create(
                account_id=invoice.account_id,
                currency=invoice.currency,
                amount_minor=credit,
                remaining_minor=credit,
                source=note,
                description=note.description,
                created_at=at,
            )


def amount_due(invoice: Invoice) -> int:
    """What is left to collect on an invoice: its total less the credit notes against it and
    what was charged. The statement of account computes it, for the charge path as for every
    surface that shows it (billing.statement)."""
    return statement.invoice_figures(invoice).amount_due_minor


def invoice_settle(
    *, invoice: Invoice, reason: str, at: datetime, attempt: PaymentAttempt | None = None
) -> bool:
    """An invoice is paid (by a charge, or by credit): stop its schedules, send the receipt,
    and lift a suspension when nothing else of the subscription is unpaid (F4)."""
    if invoice.status == S.PAID:
        return False
    invoice_transition(invoice=invoice, to=S.PAID, reason=reason, at=at)
    if attempt is not None:
        notifications.send("payment_succeeded", invoice.account, invoice=invoice, attempt=attempt)
    _collection_ended(invoice, f"invoice {invoice.number} paid", at)
    return True


def invoice_void(*, invoice: Invoice, reason: str, at: datetime) -> None:
    """Cancel an issued, unpaid invoice: nothing is owed on it any more, so its schedules stop
    and a suspension it caused is lifted, as if it were paid (F4)."""
    refuse_while_in_flight(invoice)
    invoice_transition(invoice=invoice, to=S.VOID, reason=reason, at=at)
    _collection_ended(invoice, f"invoice {invoice.number} void", at)


def invoice_write_off(*, invoice: Invoice, reason: str, at: datetime) -> None:
    """Stop collecting an invoice that will not be paid (uncollectible): no more retries,
    reminders or suspension from it. The debt stands, so the subscription keeps its state; a
    later payment (out of band) still settles it."""
    refuse_while_in_flight(invoice)
    invoice_transition(invoice=invoice, to=S.UNCOLLECTIBLE, reason=reason, at=at)
    Dunning.objects.filter(invoice=invoice).delete()


def refuse_while_in_flight(invoice: Invoice) -> None:
    if invoice.attempts.filter(status__in=["created", "sending", "unknown"]).exists():
        raise Conflict(
            f"A payment of invoice {invoice.number} is waiting for Stripe's answer: "
            "act once it is settled.",
            code="payment_in_progress",
        )


def _collection_ended(invoice: Invoice, why: str, at: datetime) -> None:
    """Nothing more to collect on the invoice: stop its schedules, and lift the subscription's
    suspension (or past-due state) when nothing else of it is unpaid (F4)."""
    Dunning.objects.filter(invoice=invoice).delete()
    subscription = invoice.subscription
    # An ended subscription stays ended: paying its last invoice settles a debt, it does not
    # start the subscription again (billing.restart does, when the merchant asks).
    if subscription is not None and subscription.ended_at is None and not _other_unpaid(invoice):
        was = subscription.status
        if (
            subscription_transition(
                subscription_id=subscription.pk, to=Subscription.Status.ACTIVE, reason=why, at=at
            )
            and was == Subscription.Status.SUSPENDED
        ):
            notifications.send("subscription_reactivated", invoice.account, invoice=invoice)


def _other_unpaid(invoice: Invoice) -> bool:
    return (
        Invoice.objects.filter(
            subscription=invoice.subscription,
            kind=InvoiceKind.INVOICE,
            status__in=OVERDUE,
        )
        .exclude(pk=invoice.pk)
        .exists()
    )
