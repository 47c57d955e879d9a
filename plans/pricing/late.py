"""F6 (and F5): usage that arrived after its period was invoiced, as its own line."""

from __future__ import annotations

from decimal import Decimal

from plans.meters import meter_label

from .core import HELPDESK_METER, RESOLUTIONS_METER
from .inputs import LateUsage
from .lines import Line, _line, _period_label
from .overage import overage_quantity

# --- F6: late usage -------------------------------------------------------------------------


def _source_rule(meter: str) -> str:
    if meter == HELPDESK_METER:
        return "P2"
    if meter == RESOLUTIONS_METER:
        return "Z9"
    return "P3"


def late_usage_line(*, late: LateUsage) -> Line | None:
    """Return the correction of an invoiced period's usage as its own line (F6, F5)."""
    terms = late.terms
    billed = overage_quantity(terms=terms, used=late.billed_units)
    owed = overage_quantity(terms=terms, used=late.units)
    if owed == billed:
        return None
    price = terms.overage_unit_price or Decimal(0)
    label = f"{meter_label(terms.meter)}, {_period_label(late.period)}"
    rules = ("F6", _source_rule(terms.meter))
    if owed > billed:
        return _line(
            kind="late_usage",
            description=_late_words(late, label),
            meter=terms.meter,
            quantity=owed - billed,
            unit_price=price,
            period=late.period,
            rules=rules,
        )
    # A late event can also un-count a unit (A4): the invoiced period is credited back.
    return _line(
        kind="credit",
        description=f"Usage correction, {label}: {late.billed_units - late.units:,} units fewer",
        meter=terms.meter,
        quantity=billed - owed,
        unit_price=-price,
        period=late.period,
        rules=("F5", *rules),
    )


def _late_words(late: LateUsage, label: str) -> str:
    """What the late units are: counted after the invoice, released after review (held by the
    spike guard, then released), or both."""
    added = late.units - late.billed_units
    released = min(late.released, added)
    if released == added:
        return f"Usage released after review, {label}: {added:,} units"
    if released:
        return (
            f"Late usage, {label}: {added:,} units after invoicing, {released:,} of them "
            "released after review"
        )
    return f"Late usage, {label}: {added:,} units after invoicing"
