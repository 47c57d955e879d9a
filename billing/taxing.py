"""Tax at issue (docs/tax.md): the decision is made once per invoice, from the seller in
settings and the buyer's tax identity as it stands, and frozen on the invoice with its per-rate
breakdown and the parties as printed. A credit note never decides again: it takes its invoice's
frozen decision and gives back tax in proportion (plans.tax.credit_note_tax).

The arithmetic and the tree are pure (plans.tax); this module only reads the account and the
settings, and turns stored JSON back into the pure values."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Final

from django.conf import settings
from django.db.models import Q

from accounts.models import Account
from plans.selectors import ecb_rate_on, tax_rate_tables
from plans.tax import (
    BuyerTax,
    RateTotal,
    TaxBreakdown,
    TaxDecision,
    TaxRate,
    credit_note_tax,
    invoice_tax,
    tax_decide,
)
from plans.tax.national import (
    EcbRate,
    NationalVat,
    credit_note_national_vat,
    national_currency,
    national_vat,
    rate_usable,
    states_vat,
)

from .tax_checks import seller_tax

logger = logging.getLogger(__name__)

# The key of the VAT in the national currency in an invoice's frozen `tax_decision`.
NATIONAL_VAT: Final = "vat_national"


@dataclass(frozen=True)
class InvoiceTax:
    """What an invoice freezes at issue: the decision, its breakdown, the parties printed."""

    decision: TaxDecision | None  # None: a credit note of an invoice issued before tax
    breakdown: TaxBreakdown
    parties: dict[str, Any]
    # The VAT in the seller's national currency (Article 230), on a document in another one.
    national: NationalVat | None = None

    def fields(self) -> dict[str, Any]:
        """The invoice's frozen tax fields."""
        decision = self.decision
        frozen = decision.as_data() if decision else {}
        if self.national is not None:
            frozen[NATIONAL_VAT] = self.national.as_data()
        return {
            "subtotal_minor": self.breakdown.subtotal_minor,
            "tax_minor": self.breakdown.tax_minor,
            "tax_treatment": str(decision.treatment) if decision else "",
            "tax_decision": frozen,
            "tax_rates": rates_data(self.breakdown),
            "vat_id_unconfirmed": bool(decision and decision.vat_id_unconfirmed),
            "parties": self.parties,
        }


def buyer_tax(account: Account) -> BuyerTax:
    """The buyer of the tax decision: the account's billing details as they stand now."""
    return BuyerTax(
        country=account.country,
        us_state=account.us_state,
        vat_id=account.vat_id,
        vat_id_status=account.tax_id_status,
    )


def parties(account: Account) -> dict[str, Any]:
    """Seller and buyer as the documents print them (Art. 226 (5) and (4)), frozen at issue:
    an address changed later never rewrites an invoice already sent."""
    locality = " ".join(part for part in (account.postal_code, account.city) if part)
    return {
        "seller": {
            "legal_name": settings.TAX_SELLER_LEGAL_NAME,
            "address": [line for line in settings.TAX_SELLER_ADDRESS if line.strip()],
            "country": settings.TAX_SELLER_COUNTRY.upper(),
            "tax_id": settings.TAX_SELLER_VAT_ID,
        },
        "buyer": {
            "legal_name": account.company or account.name,
            "address": [
                line for line in (account.address_line1, account.address_line2, locality) if line
            ],
            "country": account.country,
            "us_state": account.us_state,
            "tax_id": account.vat_id,
            "tax_id_status": account.tax_id_status,
            "tax_id_checked_at": (
                account.tax_id_checked_at.isoformat() if account.tax_id_checked_at else None
            ),
            "tax_id_consultation": account.tax_id_consultation,
        },
    }


def invoices_tax(
    *, accounts: dict[int, Account], drafts: Sequence[tuple[int, Iterable[int]]], on: date
) -> list[InvoiceTax]:
    """The tax of invoices to issue on `on`, each given as (account id, its lines' amounts):
    one decision per buyer identity, whatever the number of invoices (a close issues
    thousands, most alike)."""
    seller = seller_tax()
    eu_table, us_table = tax_rate_tables()  # the versioned table, read once per batch
    decisions: dict[tuple, TaxDecision] = {}
    ecb_rates: dict[str, EcbRate | None] = {}  # per currency, looked up once per batch
    taxes = []
    for account_id, amounts in drafts:
        account = accounts[account_id]
        buyer = buyer_tax(account)
        key = (buyer, account.billing_channel)
        decision = decisions.get(key)
        if decision is None:
            decision = tax_decide(
                seller=seller,
                buyer=buyer,
                channel=account.billing_channel,
                supplied_on=on,
                eu_rate_table=eu_table,
                us_rate_table=us_table,
            )
            decisions[key] = decision
        breakdown = invoice_tax(decision=decision, amounts_minor=amounts)
        national = None
        # An account's currency is its invoices' (fixed at creation).
        if states_vat(decision=decision, seller_country=seller.country, currency=account.currency):
            if account.currency not in ecb_rates:
                ecb_rates[account.currency] = _ecb_rate(account.currency, on)
            national = national_vat(
                breakdown=breakdown,
                currency=account.currency,
                rate=ecb_rates[account.currency],
                national=national_currency(seller.country) or "EUR",
            )
        taxes.append(
            InvoiceTax(
                decision=decision,
                breakdown=breakdown,
                parties=parties(account),
                national=national,
            )
        )
    return taxes


def _ecb_rate(currency: str, on: date) -> EcbRate | None:
    """The ECB rate an invoice of `on` converts its VAT at, or None: never a reason not to
    issue (the invoice says the rate was unavailable; the operator is told here)."""
    rate = rate_usable(ecb_rate_on(currency=currency, on=on), on=on)
    if rate is None:
        logger.warning(
            "No ECB rate for %s on or shortly before %s: invoices state 'VAT in EUR: rate "
            "unavailable' (is the daily plans.ecb_rates_fetch task loading rates?)",
            currency,
            on.isoformat(),
        )
    return rate


def stored_national_vat(invoice) -> NationalVat | None:
    """The VAT in the national currency frozen on an issued document, if it states one."""
    data = (invoice.tax_decision or {}).get(NATIONAL_VAT)
    return NationalVat.from_data(data) if data else None


# --- What is stored on the invoice, and back -------------------------------------------------


def rates_data(breakdown: TaxBreakdown) -> list[dict[str, Any]]:
    """The breakdown's rows as stored (`Invoice.tax_rates`): rates as strings, never floats."""
    return [
        {
            "rate": str(row.rate.rate),
            "label": row.rate.label,
            "taxable_minor": row.taxable_minor,
            "tax_minor": row.tax_minor,
        }
        for row in breakdown.per_rate
    ]


def stored_breakdown(invoice) -> TaxBreakdown:
    """An issued invoice's frozen breakdown (an invoice issued before tax has no rows)."""
    rows = tuple(
        RateTotal(
            rate=TaxRate(Decimal(row["rate"]), row["label"]),
            taxable_minor=row["taxable_minor"],
            tax_minor=row["tax_minor"],
        )
        for row in invoice.tax_rates
    )
    return TaxBreakdown(
        subtotal_minor=invoice.subtotal_minor,
        per_rate=rows,
        tax_minor=invoice.tax_minor,
        total_minor=invoice.subtotal_minor + invoice.tax_minor,
    )


# The line of a credit note that gives back the VAT an invoice charged on a VAT id VIES had not
# confirmed yet (billing.tax_corrections): the note's base is 0, its tax the invoice's tax.
TAX_CORRECTION: Final = "tax_correction"
# A note that gave back tax alone (base 0): the mark of a corrected invoice among its notes.
TAX_CORRECTED = Q(subtotal_minor=0, total_minor__lt=0)


def tax_corrected(notes) -> bool:
    """Whether one of an invoice's credit notes gave its tax back whole (loaded rows)."""
    return any(note.subtotal_minor == 0 and note.total_minor < 0 for note in notes)


def credit_note_tax_for(
    *, invoice, credited_before_minor: int, amount_minor: int, tax_corrected: bool = False
) -> InvoiceTax:
    """A credit note's tax: its invoice's frozen decision and parties, and tax in proportion to
    the amount credited (tax excluded), so that the notes of an invoice give back exactly the
    tax it charged. Once the invoice's tax was given back whole (`tax_corrected`: the buyer's
    VAT id was confirmed after issue), a later note gives back no tax: none is left. The
    amounts come back negative, as a credit note's are."""
    breakdown = stored_breakdown(invoice)
    if tax_corrected:
        breakdown = TaxBreakdown(breakdown.subtotal_minor, (), 0, breakdown.subtotal_minor)
    credited = credit_note_tax(
        invoice=breakdown,
        credit_minor=amount_minor,
        credited_before_minor=credited_before_minor,
    )
    negative = TaxBreakdown(
        subtotal_minor=-credited.subtotal_minor,
        per_rate=tuple(
            RateTotal(rate=row.rate, taxable_minor=-row.taxable_minor, tax_minor=-row.tax_minor)
            for row in credited.per_rate
        ),
        tax_minor=-credited.tax_minor,
        total_minor=-credited.total_minor,
    )
    decision = (
        TaxDecision.from_data(invoice.tax_decision)
        if invoice.tax_decision
        else None  # an invoice issued before tax: its notes carry none either
    )
    national = stored_national_vat(invoice)
    if national is not None and credited.tax_minor:
        national = _credited_national(
            invoice_national=national,
            invoice_currency=invoice.currency,
            breakdown=breakdown,
            credited_before_minor=credited_before_minor,
            amount_minor=amount_minor,
        )
    else:
        national = None  # no tax given back: no VAT to state
    return InvoiceTax(
        decision=decision, breakdown=negative, parties=invoice.parties, national=national
    )


def _credited_national(
    *,
    invoice_national: NationalVat,
    invoice_currency: str,
    breakdown: TaxBreakdown,
    credited_before_minor: int,
    amount_minor: int,
) -> NationalVat:
    """A note's VAT in the national currency, at the invoice's frozen rate: the euros of the
    tax credited with this note less those credited before, rate by rate."""

    def credited_so_far(amount: int) -> list[int]:
        if amount == 0:
            return [0] * len(breakdown.per_rate)
        so_far = credit_note_tax(invoice=breakdown, credit_minor=amount, credited_before_minor=0)
        return [row.tax_minor for row in so_far.per_rate]

    return credit_note_national_vat(
        invoice=invoice_national,
        invoice_currency=invoice_currency,
        tax_before=credited_so_far(credited_before_minor),
        tax_after=credited_so_far(credited_before_minor + amount_minor),
        labels=[row.rate.label for row in breakdown.per_rate],
    )


def credit_note_room(
    *, invoice, credited_subtotal_minor: int, credited_total_minor: int, tax_corrected: bool = False
) -> int:
    """The largest credit (tax excluded) one more note may take: no more than the subtotal not
    credited yet, and no more, tax included, than what is left of the invoice's total (which
    account credit may have lowered)."""
    subtotal_left = invoice.subtotal_minor - credited_subtotal_minor
    total_left = invoice.total_minor - credited_total_minor
    if subtotal_left <= 0 or total_left <= 0:
        return 0
    if not invoice.tax_rates or tax_corrected:  # no tax (left): a note's total is its amount
        return min(subtotal_left, total_left)
    breakdown = stored_breakdown(invoice)

    def total_of(amount: int) -> int:
        return credit_note_tax(
            invoice=breakdown, credit_minor=amount, credited_before_minor=credited_subtotal_minor
        ).total_minor

    if total_of(subtotal_left) <= total_left:
        return subtotal_left
    # The note's total grows with its amount: the largest amount that fits, by bisection.
    low, high = 0, subtotal_left
    while low < high:
        middle = (low + high + 1) // 2
        if total_of(middle) <= total_left:
            low = middle
        else:
            high = middle - 1
    return low
