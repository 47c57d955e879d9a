"""P2, P3: a meter's overage in arrears, per unit or per block."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from plans.meters import meter_label
from plans.money import round_minor

from .core import _count
from .inputs import MeterTerms, Period
from .lines import Line, _count_of, _line, _period_label

# --- P2, P3: overage in arrears -------------------------------------------------------------


def extra_units(*, terms: MeterTerms, used: int) -> int:
    """Return the units used above the monthly allowance, billed or not."""
    return max(0, _count(used, "used") - terms.included)


def overage_quantity(*, terms: MeterTerms, used: int) -> int:
    """Return the billed overage quantity: extra units, whole blocks, or 0 (hard cap, none)."""
    extra = extra_units(terms=terms, used=used)
    if terms.policy == "per_unit":
        return extra
    if terms.policy == "per_block":
        size = terms.block_size or 1
        return -(-extra // size)  # whole blocks: ceil(extra / size)
    return 0  # C2: a hard cap never bills overage; "none" means usage beyond is free


def overage_amount_minor(*, terms: MeterTerms, used: int) -> int:
    """Return the overage charge for one month's usage, rounded once (P2, P3, P9)."""
    quantity = overage_quantity(terms=terms, used=used)
    if quantity == 0:
        return 0
    return round_minor(quantity * Fraction(terms.overage_unit_price or 0))


def _overage_description(
    subject: str, terms: MeterTerms, period: Period, extra: int, quantity: int
) -> str:
    text = (
        f"{subject}, {meter_label(terms.meter)} overage, {_period_label(period)}:"
        f" {extra:,} over the {terms.included:,} included"
    )
    if terms.policy == "per_block":
        text += f", {_count_of(quantity, 'block')} of {terms.block_size:,}"
    return text


def _overage_line(
    *, subject: str, terms: MeterTerms, used: int, period: Period, rules: tuple[str, ...]
) -> Line | None:
    quantity = overage_quantity(terms=terms, used=used)
    if quantity == 0:
        return None
    extra = extra_units(terms=terms, used=used)
    return _line(
        kind="overage",
        description=_overage_description(subject, terms, period, extra, quantity),
        meter=terms.meter,
        quantity=quantity,
        unit_price=terms.overage_unit_price or Decimal(0),
        period=period,
        rules=rules,
    )
