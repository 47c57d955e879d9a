"""Output: the invoice line rounded once (P9), its labels, credits (F5) and the total."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from plans.money import round_minor
from plans.periods import format_period

from .core import LineKind, PricingError, _choice, _count
from .inputs import Period

# --- output ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Line:
    """One invoice line; its amount is its quantity times its unit price, rounded once."""

    kind: LineKind
    description: str
    meter: str | None
    quantity: int
    unit_price_minor: Decimal
    amount_minor: int
    rules: tuple[str, ...]
    period_start: datetime
    period_end: datetime

    def __post_init__(self) -> None:
        _choice(self.kind, LineKind, "kind")
        _count(self.quantity, "quantity")
        if not isinstance(self.unit_price_minor, Decimal) or not self.unit_price_minor.is_finite():
            raise PricingError("unit_price_minor must be a finite Decimal")
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise PricingError("amount_minor must be an int")
        if self.amount_minor != round_minor(_exact_amount(self.quantity, self.unit_price_minor)):
            raise PricingError("amount_minor must be quantity x unit_price_minor, rounded (P9)")
        # Credits are their own kind, so a charge can never hide a negative amount.
        if (self.amount_minor < 0) if self.kind != "credit" else (self.amount_minor > 0):
            raise PricingError(f"a {self.kind} line cannot amount to {self.amount_minor}")
        if not self.rules or not all(isinstance(r, str) for r in self.rules):
            raise PricingError("a line cites at least one rule id")
        Period(start=self.period_start, end=self.period_end)


def _exact_amount(quantity: int, unit_price: Decimal) -> int | Fraction:
    """quantity × unit_price, exactly: an int for a whole unit price (most are), else a
    Fraction (Fraction(Decimal) for every line was a tenth of the pricing of a close)."""
    numerator, denominator = unit_price.as_integer_ratio()
    if denominator == 1:
        return quantity * numerator
    return Fraction(quantity * numerator, denominator)


def _line(
    *,
    kind: LineKind,
    description: str,
    meter: str | None,
    quantity: int,
    unit_price: Decimal,
    period: Period,
    rules: tuple[str, ...],
) -> Line:
    exact = _exact_amount(quantity, unit_price)
    if exact.denominator != 1:
        rules = (*rules, "P9")  # the line's amount was rounded: say which rule did it
    return Line(
        kind=kind,
        description=description,
        meter=meter,
        quantity=quantity,
        unit_price_minor=unit_price,
        amount_minor=round_minor(exact),
        rules=rules,
        period_start=period.start,
        period_end=period.end,
    )


def _lump(
    *,
    kind: LineKind,
    description: str,
    meter: str | None,
    amount: int,
    period: Period,
    rules: tuple[str, ...],
) -> Line:
    # Prorated amounts have no exact unit price (a third of a fee): one unit at the rounded sum.
    return _line(
        kind=kind,
        description=description,
        meter=meter,
        quantity=1,
        unit_price=Decimal(amount),
        period=period,
        rules=rules,
    )


def _sentence(label: str) -> str:
    return label[:1].upper() + label[1:]  # "SMS tickets" stays "SMS", unlike str.capitalize


def _count_of(count: int, noun: str) -> str:
    """ "1 block", "2 blocks": a line's words never say "block(s)"."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _period_label(period: Period) -> str:
    """An invoice line names a whole calendar month ("October 2026"), else the days covered."""
    return format_period(period.start, period.end, month_by_name=True)


# --- credits and totals ---------------------------------------------------------------------


def credit_line(
    *, amount_minor: int, description: str, period: Period, carried: bool = False
) -> Line:
    """A credit taken off an invoice (negative), or, `carried`, the part of a negative total
    moved to the account's credit so that no invoice is ever below zero (positive)."""
    if amount_minor <= 0:
        raise PricingError(f"a credit is a positive amount, got {amount_minor}")
    signed = amount_minor if carried else -amount_minor
    return Line(
        kind="credit_carried" if carried else "credit",
        description=description,
        meter=None,
        quantity=1,
        unit_price_minor=Decimal(signed),
        amount_minor=signed,
        rules=("F5", "F6") if carried else ("F5",),
        period_start=period.start,
        period_end=period.end,
    )


def invoice_total(lines: Iterable[Line]) -> int:
    """Return the sum of the lines' amounts in minor units (credits included)."""
    return sum(line.amount_minor for line in lines)
