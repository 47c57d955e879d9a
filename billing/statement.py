"""The statement of account: what each invoice still owes and what credit an account holds.

One read path, computed from the ledger and nothing else: the invoices as issued (their totals
already net of the account credit their lines used), the credit notes against them, the
charges Stripe confirmed (succeeded attempts, at the amount actually charged), and the
account's credits with the invoices that used them. Every surface that shows or sends money
reads it (the Billing & Usage page, the console, the partner API, the emails, the PDFs), and
the charge path asks it what to charge (`invoicing.amount_due`), so no two can disagree.

The arithmetic is in small pure functions (`amount_due_minor`, ...); the loaders read one
fixed set of queries per account (or per invoice), never one per row.

Which invoices count toward `amount_owed`: open (held over the spending cap included: the
money is owed, only the charge waits for an operator, P8), past due, and waiting for the
customer's confirmation. An uncollectible invoice still shows what is left on it (the debt
stands and a late payment settles it), but it is written off from collection, so it is not
in `amount_owed`. An invoice whose card dispute was lost (`disputed_lost`) is owed again: its
charge counts less what the card's bank took back, and it is in `amount_owed`, though nothing
charges it automatically. Paid, void and draft invoices and credit notes owe nothing.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from accounts.models import Account
from plans.money import format_money

from . import taxing
from .models import (
    UNPAID,
    AccountCredit,
    AttemptStatus,
    DisputeStatus,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PaymentAttempt,
    PaymentMethod,
    RefundStatus,
)
from .models import CreditUse as CreditUseRow  # the row; CreditUse below is the statement's view
from .models import Dispute as DisputeRow
from .models import Refund as RefundRow  # the row; RefundRef below is the statement's view

S = InvoiceStatus
# Statuses where an invoice still has something left to pay (see the module's docstring).
# The unpaid ones (models.UNPAID) are those whose remainder counts in the account's amount owed.
OWING = (*UNPAID, S.UNCOLLECTIBLE, S.DISPUTED_LOST)
# Owed and counted in the amount owed, though no schedule charges it (an operator decides).
OWED = (*UNPAID, S.DISPUTED_LOST)


def credit_use_description(*, source_number: str, description: str) -> str:
    """The words of an invoice line that takes account credit off the invoice. Words only:
    which credit the line used is its CreditUse row, never read back from here."""
    return f"Credit from {source_number}: {description}"[:300]


# --- pure arithmetic -------------------------------------------------------------------------


def amount_due_minor(
    *, kind: str, status: str, total_minor: int, credited_minor: int, paid_minor: int
) -> int:
    """What is left to pay on an invoice: its total less the credit notes against it and what
    was charged; never below zero (a credit note on a paid invoice is the account's credit)."""
    if kind != InvoiceKind.INVOICE or status not in OWING:
        return 0
    return max(total_minor - credited_minor - paid_minor, 0)


def settled_otherwise_minor(
    *, kind: str, status: str, total_minor: int, credited_minor: int, paid_minor: int
) -> int:
    """A paid invoice's part settled neither by credit nor by a charge through Stripe: paid
    out of band (an operator recorded it)."""
    if kind != InvoiceKind.INVOICE or status != S.PAID:
        return 0
    return max(total_minor - credited_minor - paid_minor, 0)


def creditable_minor(*, invoice: Invoice, notes: Iterable[Invoice]) -> int:
    """How much a further credit note against the invoice may take, before tax (the note
    adds the invoice's tax in proportion: billing.taxing)."""
    if invoice.kind != InvoiceKind.INVOICE:
        return 0
    notes = list(notes)
    return taxing.credit_note_room(
        invoice=invoice,
        credited_subtotal_minor=-sum(note.subtotal_minor for note in notes),
        credited_total_minor=-sum(note.total_minor for note in notes),
        tax_corrected=taxing.tax_corrected(notes),
    )


def settlement_parts(figures: "InvoiceFigures") -> list[tuple[str, int]]:
    """How an invoice was (or is being) settled, as (words, amount) pairs in the order they
    happened: credit notes, charges, anything paid out of band. Emails, PDFs and the page
    print these, so they say it in the same words."""
    parts = [(f"credit note {note.number}", note.amount_minor) for note in figures.credit_notes]
    for charge in figures.charges:
        parts.append(
            (f"charged to {charge.card}" if charge.card else "charged", charge.amount_minor)
        )
    # Where a credit note's money went back to the card (billing.refunds): part of what the
    # credit notes took, not another figure to add.
    for refund in figures.refunds:
        parts.append((refund.words, refund.amount_minor))
    if figures.settled_otherwise_minor:
        # On the Shopify channel a paid invoice was billed by Shopify (usage records and the
        # recurring charge on the merchant's Shopify bill), not paid by anything we hold.
        how = "billed through Shopify" if figures.billed_through_shopify else "paid out of band"
        parts.append((how, figures.settled_otherwise_minor))
    return parts


def settlement_words(figures: "InvoiceFigures") -> str:
    """ "$200.00 charged to Visa •••• 4242; $49.88 settled by credit note 2026-000124"."""
    words = []
    for what, amount in settlement_parts(figures):
        money = format_money(amount, figures.currency)
        words.append(
            f"{money} settled by {what}" if what.startswith("credit note") else f"{money} {what}"
        )
    return "; ".join(words)


# --- what the statement holds ----------------------------------------------------------------


@dataclass(frozen=True)
class CreditNoteRef:
    number: str
    amount_minor: int  # positive: what the note takes off
    issued_at: datetime | None


@dataclass(frozen=True)
class Charge:
    """Money Stripe confirmed for an invoice."""

    amount_minor: int
    card: str  # "Visa •••• 4242", or "" when the card is no longer on file
    at: datetime | None


@dataclass(frozen=True)
class RefundRef:
    """Part of a credit note going back to the card (billing.refunds)."""

    amount_minor: int
    card: str  # "Visa •••• 4242", or "" when the card is no longer on file
    status: str  # Refund.Status
    credit_note: str  # its number

    @property
    def words(self) -> str:
        """ "refunded to Visa •••• 4242", "being refunded to ...", "not refunded to ..."."""
        card = self.card or "the card"
        if self.status == RefundStatus.SUCCEEDED:
            return f"refunded to {card}"
        if not self.is_live:
            return f"not refunded to {card} (the refund failed: account credit instead)"
        return f"being refunded to {card}"

    @property
    def is_live(self) -> bool:
        """Money that left (or is leaving) for the card; a failed refund is account credit."""
        return self.status not in (RefundStatus.FAILED, RefundStatus.CANCELED)


@dataclass(frozen=True)
class CreditApplied:
    source_number: str  # the document that gave the credit
    amount_minor: int
    credit_id: int  # the AccountCredit spent


@dataclass(frozen=True)
class InvoiceFigures:
    invoice_id: int
    number: str
    kind: str
    status: str
    currency: str
    total_minor: int  # as issued: account credit it used is already taken off
    credit_applied_minor: int  # account credit used on it (a line of the invoice)
    credited_minor: int  # credit notes against it
    paid_minor: int  # charged through Stripe (succeeded attempts)
    settled_otherwise_minor: int  # paid out of band (or billed through Shopify)
    amount_due_minor: int
    creditable_minor: int
    credit_notes: tuple[CreditNoteRef, ...] = ()
    charges: tuple[Charge, ...] = ()
    credits_applied: tuple[CreditApplied, ...] = ()
    # The credit notes' parts that went (or go) back to the card, and their sum (failed
    # refunds excluded: their amount is account credit).
    refunds: tuple[RefundRef, ...] = ()
    refunded_minor: int = 0
    # The account pays through Shopify: what is settled otherwise was billed by Shopify.
    billed_through_shopify: bool = False

    @property
    def before_credit_minor(self) -> int:
        """The invoice (tax included) before account credit was taken off it."""
        return self.total_minor + self.credit_applied_minor

    @property
    def is_owed(self) -> bool:
        return self.kind == InvoiceKind.INVOICE and self.status in OWED


@dataclass(frozen=True)
class CreditUse:
    invoice_id: int
    invoice_number: str
    amount_minor: int
    at: datetime | None


@dataclass(frozen=True)
class CreditHistory:
    """One account credit: the document that made it, the invoices that used it, what is left."""

    credit_id: int
    currency: str
    amount_minor: int
    remaining_minor: int
    source_id: int
    source_number: str
    source_kind: str  # a credit note on a paid invoice, or an invoice whose corrections carried
    credited_invoice_number: str  # for a credit note: the invoice it credits
    description: str
    created_at: datetime
    uses: tuple[CreditUse, ...] = ()

    @property
    def used_minor(self) -> int:
        return sum(use.amount_minor for use in self.uses)


@dataclass
class AccountStatement:
    account_id: int
    currency: str
    invoices: list[InvoiceFigures] = field(default_factory=list)  # newest first
    credits: list[CreditHistory] = field(default_factory=list)  # oldest first

    @property
    def by_id(self) -> dict[int, InvoiceFigures]:
        return {figures.invoice_id: figures for figures in self.invoices}

    @property
    def owed(self) -> list[InvoiceFigures]:
        """The invoices counted in the amount owed, oldest first."""
        return [f for f in reversed(self.invoices) if f.is_owed and f.amount_due_minor > 0]

    @property
    def amount_owed_minor(self) -> int:
        return sum(f.amount_due_minor for f in self.invoices if f.is_owed)

    @property
    def credit_balance_minor(self) -> int:
        return sum(c.remaining_minor for c in self.credits if c.currency == self.currency)


# --- loading the ledger ----------------------------------------------------------------------


def _card_label(brand: str, last4: str) -> str:
    return f"{brand.title()} •••• {last4}" if last4 else ""


def _figures(
    invoice: Invoice,
    *,
    notes: list[Invoice],
    charges: list[Charge],
    applied: list[CreditApplied],
    refunds: list[RefundRef] | None = None,
    shopify: bool = False,
) -> InvoiceFigures:
    credited = -sum(note.total_minor for note in notes)
    paid = sum(charge.amount_minor for charge in charges)
    # The same five figures feed both sums below.
    args: dict[str, Any] = {
        "kind": invoice.kind,
        "status": invoice.status,
        "total_minor": invoice.total_minor,
        "credited_minor": credited,
        "paid_minor": paid,
    }
    return InvoiceFigures(
        invoice_id=invoice.pk,
        number=invoice.number or "",
        kind=invoice.kind,
        status=invoice.status,
        currency=invoice.currency,
        total_minor=invoice.total_minor,
        credit_applied_minor=sum(a.amount_minor for a in applied),
        credited_minor=credited,
        paid_minor=paid,
        settled_otherwise_minor=settled_otherwise_minor(**args),
        amount_due_minor=amount_due_minor(**args),
        creditable_minor=creditable_minor(invoice=invoice, notes=notes),
        credit_notes=tuple(
            CreditNoteRef(note.number or "", -note.total_minor, note.issued_at) for note in notes
        ),
        charges=tuple(charges),
        credits_applied=tuple(applied),
        refunds=tuple(refunds or ()),
        refunded_minor=sum(r.amount_minor for r in refunds or () if r.is_live),
        billed_through_shopify=shopify,
    )


def _ledger_rows(*, account_ids: list[int], invoice_ids: list[int] | None = None):
    """The credit notes, charges, account credit used and refunds of the accounts' invoices
    (or of these invoices only): five queries whatever their number."""
    notes_q, rows_q = Q(account_id__in=account_ids), Q(invoice__account_id__in=account_ids)
    if invoice_ids is not None:
        notes_q, rows_q = Q(credited_invoice_id__in=invoice_ids), Q(invoice_id__in=invoice_ids)
    notes: dict[int, list[Invoice]] = defaultdict(list)
    for note in (
        Invoice.objects.filter(
            notes_q, kind=InvoiceKind.CREDIT_NOTE, credited_invoice__isnull=False
        )
        .exclude(status=S.DRAFT)
        .only("pk", "number", "subtotal_minor", "total_minor", "issued_at", "credited_invoice_id")
        .order_by("issued_at", "pk")
    ):
        assert note.credited_invoice_id is not None  # filtered on it above
        notes[note.credited_invoice_id].append(note)
    cards = {
        stripe_id: _card_label(brand, last4)
        for stripe_id, brand, last4 in PaymentMethod.objects.filter(
            account_id__in=account_ids
        ).values_list("stripe_id", "brand", "last4")
    }
    charges: dict[int, list[Charge]] = defaultdict(list)
    # A charge whose dispute was lost kept only what the card's bank left (a subquery: the
    # count of queries stays the same).
    taken_back = (
        DisputeRow.objects.filter(attempt=OuterRef("pk"), status=DisputeStatus.LOST)
        .values("attempt")
        .annotate(total=Sum("amount_minor"))
        .values("total")
    )
    for invoice_id_, amount, lost, method, at in (
        PaymentAttempt.objects.filter(rows_q, status=AttemptStatus.SUCCEEDED)
        .annotate(lost=Coalesce(Subquery(taken_back), 0))
        .order_by("number")
        .values_list("invoice_id", "amount_minor", "lost", "payment_method", "completed_at")
    ):
        charges[invoice_id_].append(Charge(amount - lost, cards.get(method, ""), at))
    # The credit used comes from CreditUse rows, never from the lines' words: a credit note
    # whose description happens to read "Credit from ..." is not a use of credit.
    applied: dict[int, list[CreditApplied]] = defaultdict(list)
    for invoice_id_, source, amount, credit_id in (
        CreditUseRow.objects.filter(rows_q)
        .order_by("line__position")
        .values_list("invoice_id", "credit__source__number", "amount_minor", "credit_id")
    ):
        applied[invoice_id_].append(CreditApplied(source or "", amount, credit_id))
    refund_q = (
        Q(credit_note__account_id__in=account_ids)
        if invoice_ids is None
        else Q(credit_note__credited_invoice_id__in=invoice_ids)
    )
    refunds: dict[int, list[RefundRef]] = defaultdict(list)
    for credited_id, amount, method, status, number in (
        RefundRow.objects.filter(refund_q)
        .order_by("pk")
        .values_list(
            "credit_note__credited_invoice_id",
            "amount_minor",
            "attempt__payment_method",
            "status",
            "credit_note__number",
        )
    ):
        if credited_id is not None:  # a refund's note always credits an invoice
            refunds[credited_id].append(
                RefundRef(amount, cards.get(method, ""), status, number or "")
            )
    return notes, charges, applied, refunds


def invoice_figures(invoice: Invoice) -> InvoiceFigures:
    """One invoice's figures. The invoice's own fields (status, total) are taken from the row
    passed in, as the caller read it (under its lock, in the charge path)."""
    return invoices_figures([invoice])[invoice.pk]


def invoices_figures(invoices: Iterable[Invoice]) -> dict[int, InvoiceFigures]:
    """The figures of these invoices, whatever their accounts (the console's totals)."""
    invoices = list(invoices)
    notes, charges, applied, refunds = _ledger_rows(
        account_ids=sorted({invoice.account_id for invoice in invoices}),
        invoice_ids=[invoice.pk for invoice in invoices],
    )
    shopify = _shopify_accounts(invoices)
    return {
        invoice.pk: _figures(
            invoice,
            notes=notes.get(invoice.pk, []),
            charges=charges.get(invoice.pk, []),
            applied=applied.get(invoice.pk, []),
            refunds=refunds.get(invoice.pk, []),
            shopify=invoice.account_id in shopify,
        )
        for invoice in invoices
    }


def _shopify_accounts(invoices: list[Invoice]) -> set[int]:
    """Which of the invoices' accounts pay through Shopify: read from the accounts the
    invoices carry (the charge path and the pages load them), asked only for the others."""
    known = {i.account_id: i.account for i in invoices if Invoice.account.is_cached(i)}
    shopify = {pk for pk, account in known.items() if account.pays_through_shopify}
    others = {i.account_id for i in invoices} - set(known)
    if others:
        shopify.update(
            Account.objects.filter(
                pk__in=others, billing_channel=Account.Channel.SHOPIFY
            ).values_list("pk", flat=True)
        )
    return shopify


def account_statements(*, accounts: Iterable[Account]) -> dict[int, AccountStatement]:
    """The statements of several accounts (an API page of them): six queries in all."""
    accounts = list(accounts)
    ids = [account.pk for account in accounts]
    statements = {a.pk: AccountStatement(account_id=a.pk, currency=a.currency) for a in accounts}
    if not ids:
        return statements
    invoices = list(
        Invoice.objects.filter(account_id__in=ids)
        .exclude(status=S.DRAFT)
        .only(
            "pk",
            "account_id",
            "number",
            "kind",
            "status",
            "currency",
            "subtotal_minor",
            "tax_minor",
            "tax_rates",
            "total_minor",
            "credited_invoice_id",
            "issued_at",
        )
        .order_by("-issued_at", "-pk")
    )
    notes, charges, applied, refunds = _ledger_rows(account_ids=ids)
    shopify = {a.pk for a in accounts if a.pays_through_shopify}
    numbers = {invoice.pk: invoice.number or "" for invoice in invoices}
    for invoice in invoices:
        statements[invoice.account_id].invoices.append(
            _figures(
                invoice,
                notes=notes.get(invoice.pk, []),
                charges=charges.get(invoice.pk, []),
                applied=applied.get(invoice.pk, []),
                refunds=refunds.get(invoice.pk, []),
                shopify=invoice.account_id in shopify,
            )
        )
    # Which invoices used each credit (their CreditUse rows, read above), oldest first.
    uses: dict[int, list[CreditUse]] = defaultdict(list)
    for invoice in reversed(invoices):
        for use in applied.get(invoice.pk, []):
            uses[use.credit_id].append(
                CreditUse(invoice.pk, numbers[invoice.pk], use.amount_minor, invoice.issued_at)
            )
    for credit in (
        AccountCredit.objects.filter(account_id__in=ids)
        .select_related("source")
        .order_by("created_at", "pk")
    ):
        source = credit.source
        credited_number = numbers.get(source.credited_invoice_id or 0, "")
        statements[credit.account_id].credits.append(
            CreditHistory(
                credit_id=credit.pk,
                currency=credit.currency,
                amount_minor=credit.amount_minor,
                remaining_minor=credit.remaining_minor,
                source_id=source.pk,
                source_number=source.number or "",
                source_kind=source.kind,
                credited_invoice_number=credited_number,
                description=credit.description,
                created_at=credit.created_at,
                uses=tuple(uses.get(credit.pk, ())),
            )
        )
    return statements


def account_statement(*, account: Account) -> AccountStatement:
    """The statement of one account (see the module's docstring for what counts)."""
    return account_statements(accounts=[account])[account.pk]
