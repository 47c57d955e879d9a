"""P6, P7: classifying a change and prorating what an upgrade bills at once."""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

from plans.money import round_minor

from .core import _SECOND, Change, LineKind, PricingError, _aware, _interval_months
from .inputs import Period, SubscriptionTerms
from .lines import Line, _lump, _period_label
from .resolutions import commitment_line

# --- P6, P7: changes ------------------------------------------------------------------------


def proration_minor(*, amount_minor: int, period: Period, at: datetime) -> int:
    """Return amount x remaining seconds / period seconds, rounded once half up (P6)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise PricingError("amount_minor must be an int")
    if not period.start <= _aware(at, "at") < period.end:
        raise PricingError(f"{at} is not inside the period {period.start} .. {period.end}")
    if period.seconds == 0:
        raise PricingError("a period shorter than a second cannot be prorated")
    # Whole seconds: a sub-second remainder is dropped, in the customer's favour.
    remaining = (period.end - at) // _SECOND
    return round_minor(Fraction(amount_minor * remaining, period.seconds))


def _direction(before: int, after: int) -> Change:
    if after > before:
        return "upgrade"
    return "downgrade" if after < before else "none"


def _change_parts(current: SubscriptionTerms, requested: SubscriptionTerms) -> dict[str, Change]:
    parts: dict[str, Change] = {}

    def compare(name: str, old: object, new: object, old_rank: int, new_rank: int) -> None:
        if old is None and new is None:
            return
        if old is None or new is None:
            parts[name] = "upgrade" if old is None else "downgrade"
        elif old != new and old_rank == new_rank:
            parts[name] = "downgrade"  # a lateral move is scheduled like a downgrade
        else:
            parts[name] = _direction(old_rank, new_rank)

    old_plan, new_plan = current.plan, requested.plan
    compare(
        "plan",
        old_plan and old_plan.code,
        new_plan and new_plan.code,
        old_plan.rank if old_plan else 0,
        new_plan.rank if new_plan else 0,
    )
    parts["interval"] = _direction(
        _interval_months(current.interval), _interval_months(requested.interval)
    )
    old_addons = {a.addon: a for a in current.addons}
    new_addons = {a.addon: a for a in requested.addons}
    for code in sorted(old_addons.keys() | new_addons.keys()):
        old, new = old_addons.get(code), new_addons.get(code)
        compare(
            f"addon:{code}",
            old and old.tier,
            new and new.tier,
            old.tier_rank if old else 0,
            new.tier_rank if new else 0,
        )
    old_ed, new_ed = current.edition, requested.edition
    compare(
        "edition",
        old_ed and old_ed.code,
        new_ed and new_ed.code,
        old_ed.rank if old_ed else 0,
        new_ed.rank if new_ed else 0,
    )
    if old_ed is not None and new_ed is not None:
        # Light agents are free and at_limit is a setting: neither is a billing change.
        parts["full_agents"] = _direction(old_ed.full_agents, new_ed.full_agents)
        parts["commitment"] = _direction(old_ed.commitment_units, new_ed.commitment_units)
    return parts


def change_parts(*, current: SubscriptionTerms, requested: SubscriptionTerms) -> dict[str, Change]:
    """Return each part's direction ("plan", "interval", "addon:<code>", "edition",
    "full_agents", "commitment"): a mixed request applies its upgrade parts now and schedules
    its downgrade parts for the cycle's end (P6, P7)."""
    return _change_parts(current, requested)


def classify_change(*, current: SubscriptionTerms, requested: SubscriptionTerms) -> Change:
    """Return how a whole requested change applies: now (upgrade) or at cycle end (downgrade)
    (P7). A request with any downgrade part is a "downgrade": nothing in it may be billed now
    as a whole; callers split it with `change_parts`."""
    directions = set(_change_parts(current, requested).values())
    if "downgrade" in directions:
        return "downgrade"
    return "upgrade" if "upgrade" in directions else "none"


def _fee_components(terms: SubscriptionTerms) -> dict[str, tuple[str, int, str | None]]:
    parts: dict[str, tuple[str, int, str | None]] = {}
    if terms.plan is not None:
        parts["plan"] = (f"{terms.plan.name} plan", terms.plan.fee_minor, None)
    for addon in terms.addons:
        parts[f"addon:{addon.addon}"] = (f"{addon.name} add-on", addon.fee_minor, addon.meter)
    if terms.edition is not None:
        edition = terms.edition
        label = f"{edition.name}, {edition.full_agents:,} full agents"
        parts["edition"] = (label, edition.fee_minor, None)
    return parts


def upgrade_lines(
    *,
    current: SubscriptionTerms,
    requested: SubscriptionTerms,
    cycle: Period,
    at: datetime,
    new_cycle: Period | None = None,
    is_migrated: bool = False,
) -> tuple[Line, ...]:
    """Return the lines an upgrade bills at once, prorated to the second (P6)."""
    if classify_change(current=current, requested=requested) != "upgrade":
        raise PricingError("only an upgrade is billed mid-cycle (P7 schedules the rest)")
    if current.currency != requested.currency:
        raise PricingError("a change keeps the subscription's currency")
    if not cycle.start <= _aware(at, "at") < cycle.end:
        raise PricingError(f"{at} is not inside the cycle {cycle.start} .. {cycle.end}")
    rest = Period(start=at, end=cycle.end)  # what the upgrade lines cover
    old_fees, new_fees = _fee_components(current), _fee_components(requested)

    if current.interval != requested.interval:
        # Month -> year: the unused part of each monthly fee is credited, and the annual cycle
        # that replaces the month starts where the month started, so that usage periods keep
        # their shape (a closed period never moves). Its fees are prorated from the change
        # instant: the customer pays the annual price only for the time it covers.
        if new_cycle is None or new_cycle.start != cycle.start or not at < new_cycle.end:
            raise PricingError("an interval upgrade turns the current period into a new cycle")
        lines: list[Line] = []
        if not is_migrated:  # a migrated period's fees were never billed here
            for label, fee, meter in old_fees.values():
                unused = proration_minor(amount_minor=fee, period=cycle, at=at)
                if unused:
                    lines.append(
                        _lump(
                            kind="credit",
                            description=f"{label}, unused part of the monthly fee",
                            meter=meter,
                            amount=-unused,
                            period=rest,
                            rules=("P6",),
                        )
                    )
        annual_rest = Period(start=at, end=new_cycle.end)
        kinds: dict[str, LineKind] = {"plan": "plan_fee", "edition": "edition_fee"}
        for name, (label, fee, meter) in new_fees.items():
            amount = proration_minor(amount_minor=fee, period=new_cycle, at=at)
            lines.append(
                _lump(
                    kind=kinds.get(name, "addon_fee"),
                    description=f"{label}, annual fee for {_period_label(annual_rest)} (prorated)",
                    meter=meter,
                    amount=amount,
                    period=annual_rest,
                    rules=("P1", "P6"),
                )
            )
        if requested.edition is not None and requested.edition.commitment_units:
            units = requested.edition.commitment_units
            lines.append(commitment_line(edition=requested.edition, units=units, term=annual_rest))
        return tuple(lines)

    if new_cycle is not None:
        raise PricingError("only an interval upgrade starts a new cycle")
    parts = _change_parts(current, requested)
    lines = []
    for name, (label, new_fee, meter) in new_fees.items():
        if name == "edition":
            changed = "upgrade" in (parts.get("edition"), parts.get("full_agents"))
        else:
            changed = parts.get(name) == "upgrade"
        if not changed:
            continue  # an unchanged component pays nothing, even if its list price moved
        old_label, old_fee, _ = old_fees.get(name, ("", 0, None))
        difference = proration_minor(amount_minor=new_fee - old_fee, period=cycle, at=at)
        if difference == 0:
            continue
        what = f"Upgrade from {old_label} to {label}" if old_label else f"{label} added"
        lines.append(
            _lump(
                kind="proration" if difference > 0 else "credit",
                description=f"{what}, rest of the period",
                meter=meter,
                amount=difference,
                period=rest,
                rules=("P6",),
            )
        )
    new_edition = requested.edition
    already = current.edition.commitment_units if current.edition else 0
    if new_edition is not None and new_edition.commitment_units > already:
        # Committed resolutions are units, not time: the added units are paid in full.
        added = new_edition.commitment_units - already
        lines.append(commitment_line(edition=new_edition, units=added, term=rest))
    return tuple(lines)
