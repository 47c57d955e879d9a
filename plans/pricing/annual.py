"""P4: Voice and SMS overage on an annual cycle, charged at the cycle's end."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from plans.meters import meter_label

from .core import DEFERRED_ON_ANNUAL, PricingError
from .inputs import Period, UsageMonth
from .lines import Line, _count_of, _line, _period_label, _sentence
from .overage import extra_units, overage_quantity

# --- P4: Voice and SMS on an annual cycle ---------------------------------------------------


def deferred_usage_lines(*, months: Sequence[UsageMonth], cycle: Period) -> tuple[Line, ...]:
    """Return the cycle-end Voice/SMS lines: each month's overage, summed per add-on (P4)."""
    groups: dict[tuple[str, str, Decimal, int | None], list[UsageMonth]] = {}
    seen: dict[str, list[Period]] = {}
    for month in months:
        meter = month.terms.meter
        if meter not in DEFERRED_ON_ANNUAL:
            raise PricingError(f"{meter} is not charged at the end of an annual cycle")
        if not cycle.contains(month.period):
            raise PricingError("a deferred month lies outside its cycle")
        if any(
            month.period.start < p.end and p.start < month.period.end for p in seen.get(meter, ())
        ):
            raise PricingError(f"two {meter} months overlap")
        seen.setdefault(meter, []).append(month.period)
        price = month.terms.overage_unit_price
        if price is None:
            continue
        # One line per add-on; a tier change that also changed the unit price (or the block
        # size) splits it, so that every line stays quantity x unit price.
        key = (meter, month.terms.policy, price, month.terms.block_size)
        groups.setdefault(key, []).append(month)
    lines: list[Line] = []
    for (meter, policy, price, block_size), group in sorted(groups.items(), key=lambda i: i[0]):
        quantity = sum(overage_quantity(terms=m.terms, used=m.used) for m in group)
        if quantity == 0:
            continue
        extra = sum(extra_units(terms=m.terms, used=m.used) for m in group)
        description = (
            f"{_sentence(meter_label(meter))} overage, cycle {_period_label(cycle)}:"
            f" {extra:,} over the monthly allowances of {_count_of(len(group), 'month')}"
        )
        if policy == "per_block":
            description += f", {_count_of(quantity, 'block')} of {block_size:,}"
        lines.append(
            _line(
                kind="overage",
                description=description,
                meter=meter,
                quantity=quantity,
                unit_price=price,
                period=cycle,
                rules=("P3", "P4"),
            )
        )
    return tuple(lines)
