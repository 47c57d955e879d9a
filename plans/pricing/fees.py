"""P1: plan, add-on and edition fees, billed in advance."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from .core import ANNUAL_FEE_MONTHS, Interval, _aware, _choice, _count
from .inputs import Period, SubscriptionTerms
from .lines import Line, _count_of, _line
from .resolutions import commitment_line

# --- P1: fees in advance --------------------------------------------------------------------


def annual_fee_minor(*, monthly_fee_minor: int) -> int:
    """Return the annual fee: ten months for twelve (P1, "two months off")."""
    return ANNUAL_FEE_MONTHS * _count(monthly_fee_minor, "monthly_fee_minor")


def interval_fee_minor(*, monthly_fee_minor: int, interval: Interval) -> int:
    """Return a plan or add-on fee for one interval from its monthly price (P1)."""
    _choice(interval, Interval, "interval")
    if interval == "year":
        return annual_fee_minor(monthly_fee_minor=monthly_fee_minor)
    return _count(monthly_fee_minor, "monthly_fee_minor")


def is_migrated_period(*, period_start: datetime, created_at: datetime) -> bool:
    """Whether the first period started before the subscription existed here (P1 migration)."""
    return _aware(period_start, "period_start") < _aware(created_at, "created_at")


def fee_lines(
    *, terms: SubscriptionTerms, period: Period, is_migrated: bool = False
) -> tuple[Line, ...]:
    """Return the in-advance fee lines of one billing period (P1); none for a migrated one."""
    if is_migrated:
        # The partner's previous system already billed this period's fees.
        return ()
    word = "annual" if terms.interval == "year" else "monthly"
    lines: list[Line] = []
    if terms.plan is not None:
        lines.append(
            _line(
                kind="plan_fee",
                description=f"{terms.plan.name} plan, {word} fee",
                meter=None,
                quantity=1,
                unit_price=Decimal(terms.plan.fee_minor),
                period=period,
                rules=("P1",),
            )
        )
    for addon in terms.addons:
        lines.append(
            _line(
                kind="addon_fee",
                description=f"{addon.name} add-on, {word} fee",
                meter=addon.meter,
                quantity=1,
                unit_price=Decimal(addon.fee_minor),
                period=period,
                rules=("P1", "P3"),
            )
        )
    edition = terms.edition
    if edition is not None:
        lines.append(
            _line(
                kind="edition_fee",
                description=(
                    f"{edition.name}, {edition.full_agents:,} full agents"
                    f" x {_count_of(edition.months, 'month')}"
                ),
                meter=None,
                quantity=edition.full_agents,
                unit_price=Decimal(edition.fee_per_agent_minor * edition.months),
                period=period,
                rules=("P1",),
            )
        )
        if edition.commitment_units:
            lines.append(
                commitment_line(edition=edition, units=edition.commitment_units, term=period)
            )
    return tuple(lines)
