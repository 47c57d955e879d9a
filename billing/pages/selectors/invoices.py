"""The Invoices tab: every invoice and credit note with what can be done about it, and the
statement's figures."""

from dataclasses import dataclass, field

from django.db.models import Prefetch

from accounts.models import Account

from ... import phrases, statement, taxing
from ...models import Invoice, InvoiceKind, PaymentAttempt
from ...payments import confirmation_path, default_payment_method
from ...statement import InvoiceFigures
from .common import S


@dataclass(frozen=True)
class TaxRateRow:
    label: str  # "VAT FR 20 %", "Reverse charge"
    taxable_minor: int
    tax_minor: int


@dataclass(frozen=True)
class InvoiceTaxView:
    """An issued invoice's tax as its row shows it: the parties and the breakdown frozen at
    issue, the totals with and without tax, and the legal mentions (docs/tax.md)."""

    seller: dict
    buyer: dict
    subtotal_minor: int
    rates: tuple[TaxRateRow, ...]
    tax_minor: int
    total_incl_tax_minor: int
    mentions: tuple[str, ...]
    national_vat: str = ""  # "VAT due in EUR: €60.61 (ECB rate …)" (docs/tax.md)


def invoice_tax_view(invoice: Invoice) -> InvoiceTaxView | None:
    """None for an invoice issued before tax, and for the Shopify channel (Shopify invoices
    the tax on its charges; the page says so once, above the list)."""
    if not invoice.tax_rates:
        return None
    national = taxing.stored_national_vat(invoice)
    return InvoiceTaxView(
        seller=invoice.parties.get("seller", {}),
        buyer=invoice.parties.get("buyer", {}),
        subtotal_minor=invoice.subtotal_minor,
        rates=tuple(
            TaxRateRow(
                label=row["label"], taxable_minor=row["taxable_minor"], tax_minor=row["tax_minor"]
            )
            for row in invoice.tax_rates
        ),
        tax_minor=invoice.tax_minor,
        # What the supply costs with its tax; `total_minor` is what is owed, account credit off.
        total_incl_tax_minor=invoice.subtotal_minor + invoice.tax_minor,
        mentions=tuple(invoice.tax_decision.get("mentions", ())),
        national_vat=national.sentence() if national is not None else "",
    )


@dataclass
class InvoiceRow:
    invoice: Invoice
    covers: tuple[phrases.Cover, ...]  # usage, then fees; a credit note: its invoice's
    failure_reason: str
    confirm_url: str
    can_retry: bool
    held_reason: str
    figures: InvoiceFigures | None = None  # total, credited, paid, amount due (the statement)
    usage_records: list = field(default_factory=list)  # Shopify channel: shopify.RecordRow
    tax: InvoiceTaxView | None = None


def invoice_rows(
    *, account: Account, account_statement: statement.AccountStatement | None = None
) -> list[InvoiceRow]:
    """Every invoice and credit note of the account, newest first, with what the merchant can
    do about each: confirm (F2), retry where a retry can succeed (F3)."""
    card = default_payment_method(account.pk)
    has_card = card is not None
    account_statement = account_statement or statement.account_statement(account=account)
    figures = account_statement.by_id
    invoices = (
        Invoice.objects.filter(account=account)
        .exclude(status=S.DRAFT)
        .select_related("credited_invoice", "dunning")
        .prefetch_related(
            "lines",
            "credited_invoice__lines",  # a credit note covers what its invoice covers
            Prefetch("attempts", queryset=PaymentAttempt.objects.all()),
        )
        .order_by("-issued_at", "-pk")
    )
    rows = []
    for invoice in invoices:
        attempts = sorted(invoice.attempts.all(), key=lambda a: a.number)
        last = attempts[-1] if attempts else None
        dunning = getattr(invoice, "dunning", None)
        held = dunning.held_reason if dunning else ""
        waiting = (
            invoice.status == S.REQUIRES_CONFIRMATION
            and last is not None
            and last.status == PaymentAttempt.Status.REQUIRES_ACTION
        )
        rows.append(
            InvoiceRow(
                invoice=invoice,
                covers=phrases.invoice_covers(invoice),
                failure_reason=last.failure_reason if last and invoice.status == S.PAST_DUE else "",
                confirm_url=confirmation_path(last) if waiting and last else "",
                # A retry can succeed only with a card, on an invoice not held by the cap (P8);
                # beside a payment waiting for the bank, only with another card (it replaces
                # that payment, cancelled at Stripe first).
                can_retry=invoice.kind == InvoiceKind.INVOICE
                and not account.pays_through_shopify  # Shopify bills it: no card here
                and not held
                and (
                    (invoice.status in (S.PAST_DUE, S.OPEN) and has_card)
                    or (
                        waiting
                        and last is not None
                        and card is not None
                        and card.stripe_id != last.payment_method
                    )
                ),
                held_reason=held,
                figures=figures.get(invoice.pk),
                tax=invoice_tax_view(invoice),
            )
        )
    return rows


def invoice_for_account(*, account: Account, invoice_id: int) -> Invoice | None:
    return (
        Invoice.objects.filter(account=account, pk=invoice_id)
        .exclude(status=S.DRAFT)
        .select_related("account", "credited_invoice")
        .first()
    )


def outstanding_minor(*, account: Account) -> int:
    """What the account owes: the statement's amount owed (credit notes and charges off)."""
    return statement.account_statement(account=account).amount_owed_minor


def account_credit(*, account: Account) -> statement.AccountStatement:
    """The invoices tab's figures: amount owed, credit balance and each credit's history."""
    return statement.account_statement(account=account)
