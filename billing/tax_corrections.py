"""Correcting invoices that charged VAT on a VAT id VIES had not confirmed yet (docs/tax.md).

When VIES cannot answer at issue, we charge VAT and say so on the invoice
(`Invoice.vat_id_unconfirmed`). Once VIES confirms the same id, the buyer was entitled to the
reverse charge: an operator issues the correcting credit note from the console. It gives back
the invoice's tax whole (base 0), names the VIES consultation that confirmed the id, and moves
money as any credit note does (netted on an unpaid invoice, account credit on a paid one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.errors import Conflict
from accounts.models import Account, TaxIdStatus
from audit.services import audit_record
from plans import pricing
from plans.tax import EU_MEMBER_STATES, RateTotal, TaxBreakdown, TaxDecision

from . import phrases, taxing
from .invoicing import InvoiceDraft, credit_note_apply, invoices_issue, refuse_while_in_flight
from .models import Invoice, InvoiceKind, InvoiceReason, InvoiceStatus


@dataclass(frozen=True)
class VatCorrection:
    """An invoice that charged VAT on an unconfirmed VAT id, and whether it can be corrected."""

    invoice: Invoice
    correctable: bool
    why_not: str  # in words, when it cannot be corrected yet


def _why_not(invoice: Invoice, account: Account) -> str:
    decided = TaxDecision.from_data(invoice.tax_decision)
    country = (account.country or "").upper()
    if account.vat_id != decided.buyer_tax_id:
        return (
            f"The account's VAT id is now {account.vat_id or 'none'}, not {decided.buyer_tax_id}."
        )
    if account.tax_id_status != TaxIdStatus.VALID:
        return (
            f"VIES has not confirmed {account.vat_id} yet ({account.get_tax_id_status_display()})."
        )
    if country not in EU_MEMBER_STATES or country == settings.TAX_SELLER_COUNTRY.upper():
        return "The buyer is not in another EU country: VAT stays due."
    if invoice.status in (InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE):
        return f"The invoice is {invoice.get_status_display()}."
    return ""


def _uncorrected():
    corrected = Invoice.objects.filter(credited_invoice=OuterRef("pk")).filter(taxing.TAX_CORRECTED)
    return Invoice.objects.filter(
        kind=InvoiceKind.INVOICE, vat_id_unconfirmed=True, tax_minor__gt=0
    ).exclude(Exists(corrected))


def vat_corrections_list(*, account: Account | None = None) -> list[VatCorrection]:
    """Invoices issued with VAT because VIES had not confirmed the buyer's VAT id and not
    corrected yet, oldest first, each with whether it can be corrected now."""
    invoices = _uncorrected().select_related("account").order_by("issued_at", "pk")
    if account is not None:
        invoices = invoices.filter(account=account)
    rows = []
    for invoice in invoices:
        why = _why_not(invoice, invoice.account)
        rows.append(VatCorrection(invoice=invoice, correctable=not why, why_not=why))
    return rows


def vat_correction_issue(*, invoice: Invoice, reason: str, at: datetime | None = None) -> Invoice:
    """Give back the VAT of an invoice whose buyer's VAT id VIES has confirmed since: a credit
    note of the invoice's tax, base 0, with the evidence in its words. Refused when the id is
    not (or no longer) confirmed, or the invoice was corrected already."""
    at = at or timezone.now()
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        account = Account.objects.get(pk=invoice.account_id)
        if not _uncorrected().filter(pk=invoice.pk).exists():
            raise Conflict(
                f"Invoice {invoice.number} has no VAT to correct: it was issued on a confirmed "
                "VAT id, or its VAT was given back already.",
                code="nothing_to_correct",
            )
        why = _why_not(invoice, account)
        if why:
            raise Conflict(why, code="vat_id_not_confirmed")
        refuse_while_in_flight(invoice)
        checked = account.tax_id_checked_at
        description = (
            f"VAT given back: VAT id {account.vat_id} confirmed by VIES on {checked:%Y-%m-%d}"
            if checked
            else f"VAT given back: VAT id {account.vat_id} confirmed by VIES"
        )
        if account.tax_id_consultation:
            description += f" (consultation {account.tax_id_consultation})"
        description += "; reverse charge applies (Article 196 of Directive 2006/112/EC)."
        start, end = phrases.covers_span(phrases.invoice_covers(invoice))
        period = pricing.Period(start=start, end=end)
        line = pricing.Line(
            kind=taxing.TAX_CORRECTION,
            description=description[:300],
            meter=None,
            quantity=1,
            unit_price_minor=Decimal(0),
            amount_minor=0,
            rules=("F5",),
            period_start=period.start,
            period_end=period.end,
        )
        stored = taxing.stored_breakdown(invoice)
        breakdown = TaxBreakdown(
            subtotal_minor=0,
            per_rate=tuple(
                RateTotal(rate=row.rate, taxable_minor=0, tax_minor=-row.tax_minor)
                for row in stored.per_rate
            ),
            tax_minor=-invoice.tax_minor,
            total_minor=-invoice.tax_minor,
        )
        national = taxing.stored_national_vat(invoice)
        tax = taxing.InvoiceTax(
            decision=TaxDecision.from_data(invoice.tax_decision),
            breakdown=breakdown,
            parties=invoice.parties,
            # The invoice's whole VAT given back: its euros too, at its frozen rate.
            national=national.negative() if national is not None else None,
        )
        (note,) = invoices_issue(
            drafts=[
                InvoiceDraft(
                    subscription=invoice.subscription,
                    account_id=invoice.account_id,
                    currency=invoice.currency,
                    reason=InvoiceReason.CORRECTION,
                    period=period,
                    lines=[line],
                    kind=InvoiceKind.CREDIT_NOTE,
                    credited=invoice,
                    note=f"VAT correction of invoice {invoice.number}.",
                    description=description[:300],
                    tax=tax,
                )
            ],
            at=at,
        )
        credit_note_apply(invoice=invoice, note=note, at=at)
        audit_record(
            action="invoice.vat_corrected",
            obj=invoice,
            account_id=invoice.account_id,
            before=invoice.tax_minor,
            after=note.number,
            reason=reason,
        )
        return note
