"""One period close: the closed month's usage, cycle-end usage, late usage and next fees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .annual import deferred_usage_lines
from .core import DEFERRED_ON_ANNUAL, HELPDESK_METER, RESOLUTIONS_METER, PricingError, _count
from .fees import fee_lines
from .inputs import LateUsage, Period, SubscriptionTerms, UsageMonth
from .late import late_usage_line
from .lines import Line
from .overage import _overage_line
from .resolutions import resolution_overage_line

# --- P2, P3, P4, Z9: the usage lines of one closed month ------------------------------------


def usage_lines(
    *,
    terms: SubscriptionTerms,
    closed: Period,
    usage: Mapping[str, int],
    resolutions_used_earlier: int = 0,
) -> tuple[Line, ...]:
    """Return the monthly usage lines of one closed month (P2, P3, P4, Z9)."""
    for meter, used in usage.items():
        _count(used, f"usage[{meter!r}]")
    annual = terms.interval == "year"
    lines: list[Line | None] = []
    if terms.plan is not None:
        lines.append(
            _overage_line(
                subject=f"{terms.plan.name} plan",
                terms=terms.plan.helpdesk,
                used=usage.get(HELPDESK_METER, 0),
                period=closed,
                rules=("P2", "P4") if annual else ("P2",),
            )
        )
    for addon in terms.addons:
        if annual and addon.meter in DEFERRED_ON_ANNUAL:
            continue  # P4: charged at the end of the cycle by deferred_usage_lines
        lines.append(
            _overage_line(
                subject=f"{addon.name} add-on",
                terms=addon.usage,
                used=usage.get(addon.meter, 0),
                period=closed,
                rules=("P3", "P4") if annual else ("P3",),
            )
        )
    if terms.edition is not None:
        lines.append(
            resolution_overage_line(
                edition=terms.edition,
                used_this_month=usage.get(RESOLUTIONS_METER, 0),
                used_earlier=resolutions_used_earlier,
                period=closed,
            )
        )
    return tuple(line for line in lines if line is not None)


# --- one period close -----------------------------------------------------------------------


def price_period_close(
    *,
    terms: SubscriptionTerms,
    closed: Period,
    cycle: Period,
    usage: Mapping[str, int],
    resolutions_used_earlier: int = 0,
    earlier_months: Sequence[UsageMonth] = (),
    late: Sequence[LateUsage] = (),
    next_cycle: Period | None = None,
    next_terms: SubscriptionTerms | None = None,
) -> tuple[Line, ...]:
    """Return one period close's lines: closed month's usage, late usage, next fees (P1)."""
    if not cycle.contains(closed):
        raise PricingError("the closed month lies outside its billing cycle")
    if terms.interval == "month" and cycle != closed:
        raise PricingError("on a monthly subscription the cycle is the closed period")
    cycle_ends = closed.end == cycle.end
    if (next_cycle is not None or earlier_months) and not cycle_ends:
        raise PricingError("fees and cycle-end usage come only when the cycle closes (P1, P4)")
    if next_cycle is not None and next_cycle.start != cycle.end:
        raise PricingError("the next cycle starts where the closed one ends")
    if next_terms is not None and next_cycle is None:
        raise PricingError("next_terms are the terms of next_cycle")
    if earlier_months and terms.interval != "year":
        raise PricingError("only an annual subscription defers Voice and SMS usage (P4)")
    if any(m.period.end > closed.start for m in earlier_months):
        raise PricingError("earlier_months must end before the closed month starts")
    if any(item.period.end > closed.start for item in late):
        raise PricingError("late usage belongs to a period invoiced before this one")

    lines = list(
        usage_lines(
            terms=terms,
            closed=closed,
            usage=usage,
            resolutions_used_earlier=resolutions_used_earlier,
        )
    )
    if cycle_ends and terms.interval == "year":
        deferred = [
            UsageMonth(period=closed, used=usage.get(addon.meter, 0), terms=addon.usage)
            for addon in terms.addons
            if addon.meter in DEFERRED_ON_ANNUAL
        ]
        lines.extend(deferred_usage_lines(months=[*earlier_months, *deferred], cycle=cycle))
    for item in late:
        line = late_usage_line(late=item)
        if line is not None:
            lines.append(line)
    if next_cycle is not None:
        renewal = next_terms or terms
        if renewal.currency != terms.currency:
            raise PricingError("one invoice has one currency")
        lines.extend(fee_lines(terms=renewal, period=next_cycle))
    return tuple(lines)
