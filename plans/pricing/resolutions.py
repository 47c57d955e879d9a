"""Z8, Z9: automated resolutions: allocation, commitment and pay-as-you-go overage."""

from __future__ import annotations

from .core import RESOLUTIONS_METER, PricingError, _count
from .inputs import EditionTerms, MeterTerms, Period
from .lines import Line, _line, _period_label
from .overage import overage_quantity

# --- Z8, Z9: automated resolutions ----------------------------------------------------------


def resolution_allocation(*, edition: EditionTerms) -> int:
    """Return the term's allocation: per full agent per month x months, capped (Z8)."""
    granted = edition.resolutions_per_agent_month * edition.full_agents * edition.months
    # The cap is stated per year; a shorter term gets its share, rounded down so that a year
    # of monthly terms never exceeds it.
    cap = edition.yearly_cap * edition.months // 12
    return min(granted, cap)


def resolution_limit(*, edition: EditionTerms) -> int:
    """Return the allocation plus the committed resolutions of the term (Z8, Z9)."""
    return resolution_allocation(edition=edition) + edition.commitment_units


def resolution_terms(*, edition: EditionTerms) -> MeterTerms:
    """Return the term-long meter terms of automated resolutions (keep: pay as you go)."""
    if edition.at_limit == "pause":
        # AI features pause at the limit; anything counted beyond it is never billed.
        return MeterTerms(
            meter=RESOLUTIONS_METER, included=resolution_limit(edition=edition), policy="none"
        )
    return MeterTerms(
        meter=RESOLUTIONS_METER,
        included=resolution_limit(edition=edition),
        policy="per_unit",
        unit_price_minor=edition.overage_unit_minor,
    )


def resolution_overage_line(
    *, edition: EditionTerms, used_this_month: int, used_earlier: int, period: Period
) -> Line | None:
    """Return one month's pay-as-you-go resolutions beyond allocation + commitment (Z9)."""
    terms = resolution_terms(edition=edition)
    before = _count(used_earlier, "used_earlier")
    after = before + _count(used_this_month, "used_this_month")
    # Billed monthly whatever the term: only the part of the term's running total that crossed
    # the limit this month, so a month straddling the limit pays only for what lies above it.
    quantity = overage_quantity(terms=terms, used=after) - overage_quantity(
        terms=terms, used=before
    )
    if quantity == 0:
        return None
    allocation = resolution_allocation(edition=edition)
    return _line(
        kind="overage",
        description=(
            f"{edition.name}, automated resolutions, {_period_label(period)}: {quantity:,}"
            f" beyond the term's limit of {terms.included:,}"
            f" ({allocation:,} allocated + {edition.commitment_units:,} committed)"
        ),
        meter=RESOLUTIONS_METER,
        quantity=quantity,
        unit_price=edition.overage_unit_minor,
        period=period,
        rules=("Z8", "Z9"),
    )


def commitment_line(*, edition: EditionTerms, units: int, term: Period) -> Line:
    """Return the purchase of committed resolutions for a term, paid at purchase (Z9)."""
    if _count(units, "units") < edition.min_commitment_units:
        raise PricingError(f"a commitment is at least {edition.min_commitment_units} resolutions")
    return _line(
        kind="commitment",
        description=f"{edition.name}, {units:,} committed automated resolutions",
        meter=RESOLUTIONS_METER,
        quantity=units,
        unit_price=edition.commitment_unit_minor,
        period=term,
        rules=("Z9",),
    )
