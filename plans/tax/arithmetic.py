"""Tax amounts in integer minor units (pure; no Django import).

Prices are tax-exclusive. Tax is computed ONCE PER RATE on the sum of that rate's taxable
lines and rounded half up once (plans.money.round_minor): never per line and then summed,
which drifts by a cent as soon as two lines each round up (Lago's issue #821). The total is the
subtotal plus the tax. A credit note takes its tax from its invoice's frozen breakdown, in
proportion to the amount it credits, so that crediting an invoice in full, in one note or in
several, gives back exactly the tax that was invoiced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from plans.money import round_minor

from .decision import TaxDecision, TaxRate

__all__ = [
    "RateTotal",
    "TaxArithmeticError",
    "TaxBreakdown",
    "TaxableLine",
    "credit_note_tax",
    "invoice_tax",
    "tax_compute",
    "tax_on",
]


class TaxArithmeticError(ValueError):
    """A credit note that does not fit its invoice."""


@dataclass(frozen=True)
class TaxableLine:
    """An invoice line's amount (minor units, tax excluded) and the rate it is taxed at."""

    amount_minor: int
    rate: TaxRate


@dataclass(frozen=True)
class RateTotal:
    """One row of the breakdown printed on a document: base, rate, tax (Art. 226 (8))."""

    rate: TaxRate
    taxable_minor: int
    tax_minor: int


@dataclass(frozen=True)
class TaxBreakdown:
    subtotal_minor: int
    per_rate: tuple[RateTotal, ...]
    tax_minor: int
    total_minor: int


def tax_on(taxable_minor: int, rate: TaxRate) -> int:
    """The tax on one rate's taxable sum, rounded half up once."""
    return round_minor(Fraction(taxable_minor) * Fraction(rate.rate) / 100)


def _breakdown(subtotal_minor: int, bases: dict[TaxRate, int]) -> TaxBreakdown:
    per_rate = tuple(
        RateTotal(rate=rate, taxable_minor=base, tax_minor=tax_on(base, rate))
        for rate, base in bases.items()
    )
    tax = sum(row.tax_minor for row in per_rate)
    return TaxBreakdown(subtotal_minor, per_rate, tax, subtotal_minor + tax)


def tax_compute(*, lines: Iterable[TaxableLine]) -> TaxBreakdown:
    """Subtotal, one breakdown row per rate (in order of first appearance), tax, total."""
    bases: dict[TaxRate, int] = {}
    subtotal = 0
    for line in lines:
        if isinstance(line.amount_minor, bool) or not isinstance(line.amount_minor, int):
            raise TypeError(f"amounts are int minor units, not {line.amount_minor!r}")
        bases[line.rate] = bases.get(line.rate, 0) + line.amount_minor
        subtotal += line.amount_minor
    return _breakdown(subtotal, bases)


def invoice_tax(*, decision: TaxDecision, amounts_minor: Iterable[int]) -> TaxBreakdown:
    """The breakdown of an invoice whose lines all take the decision's one rate; a decision
    with no rate (the Shopify channel) carries no tax and no breakdown row."""
    rate = decision.rate
    amounts = list(amounts_minor)
    if rate is None:
        subtotal = sum(amounts)
        return TaxBreakdown(subtotal, (), 0, subtotal)
    return tax_compute(lines=(TaxableLine(amount, rate) for amount in amounts))


def _allocate(amount_minor: int, invoice: TaxBreakdown) -> dict[TaxRate, int]:
    """Split `amount_minor` over the invoice's rates in proportion to their bases, in whole
    minor units that add up exactly (largest remainder; ties to the earlier row)."""
    shares = [
        Fraction(amount_minor * row.taxable_minor, invoice.subtotal_minor)
        for row in invoice.per_rate
    ]
    whole = [share.numerator // share.denominator for share in shares]
    left = amount_minor - sum(whole)
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - whole[i]), i))
    for index in by_remainder[:left]:
        whole[index] += 1
    return {row.rate: part for row, part in zip(invoice.per_rate, whole, strict=True)}


def credit_note_tax(
    *, invoice: TaxBreakdown, credit_minor: int, credited_before_minor: int = 0
) -> TaxBreakdown:
    """The breakdown of a credit note of `credit_minor` (tax excluded, positive) on an invoice
    already credited by `credited_before_minor`: the tax of everything credited so far, less
    the tax of what was credited before, so the notes of an invoice never give back a cent
    more (or less) than it charged."""
    if invoice.subtotal_minor <= 0:
        raise TaxArithmeticError("only an invoice that charged something can be credited")
    if credit_minor <= 0 or credited_before_minor < 0:
        raise TaxArithmeticError("a credit note credits a positive amount")
    if credited_before_minor + credit_minor > invoice.subtotal_minor:
        raise TaxArithmeticError(
            f"crediting {credit_minor} after {credited_before_minor} exceeds the invoice's "
            f"subtotal of {invoice.subtotal_minor}"
        )
    if not invoice.per_rate:
        return TaxBreakdown(credit_minor, (), 0, credit_minor)
    after = _allocate(credited_before_minor + credit_minor, invoice)
    before = _allocate(credited_before_minor, invoice)
    rows = []
    for rate, base_after in after.items():
        base = base_after - before[rate]
        rows.append(RateTotal(rate, base, tax_on(base_after, rate) - tax_on(before[rate], rate)))
    tax = sum(row.tax_minor for row in rows)
    return TaxBreakdown(credit_minor, tuple(rows), tax, credit_minor + tax)
