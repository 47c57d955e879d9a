"""Tax on invoices: the decision tree, the rates as data, the arithmetic (pure; no Django).

Public API (docs/tax.md)
    tax_decide(*, seller, buyer, channel, supplied_on, us_rate_table=None, eu_rate_table=None)
        -> TaxDecision
    rate_for(country, on_date, *, table=None) -> Decimal   EU standard VAT rate in percent
    invoice_tax(*, decision, amounts_minor) -> TaxBreakdown
    tax_compute(*, lines) -> TaxBreakdown          lines at several rates
    credit_note_tax(*, invoice, credit_minor, credited_before_minor=0) -> TaxBreakdown
"""

from .arithmetic import (
    RateTotal,
    TaxableLine,
    TaxArithmeticError,
    TaxBreakdown,
    credit_note_tax,
    invoice_tax,
    tax_compute,
    tax_on,
)
from .decision import BuyerTax, SellerTax, TaxDecision, TaxRate, Treatment, VatIdStatus, tax_decide
from .rates import (
    EU_MEMBER_STATES,
    US_STATES,
    RateEntry,
    RateTable,
    UnknownRate,
    eu_rates,
    rate_for,
    us_rates,
)

__all__ = [
    "EU_MEMBER_STATES",
    "BuyerTax",
    "RateEntry",
    "RateTable",
    "RateTotal",
    "SellerTax",
    "TaxArithmeticError",
    "TaxBreakdown",
    "TaxDecision",
    "TaxRate",
    "TaxableLine",
    "Treatment",
    "US_STATES",
    "UnknownRate",
    "VatIdStatus",
    "credit_note_tax",
    "eu_rates",
    "invoice_tax",
    "rate_for",
    "tax_compute",
    "tax_decide",
    "tax_on",
    "us_rates",
]
