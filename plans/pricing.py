"""The rating rules: plan, add-on and edition terms plus usage -> invoice lines.

Pure module: no Django import, no I/O, no clock (every instant is an argument). Money is integer
minor units; per-unit prices are exact ``Decimal`` minor units; each line is rounded once, half
up (P9). The decision taken for every rule id is written down in ``docs/pricing.md``.

Inputs: frozen, keyword-only dataclasses that services build from catalog and subscription rows.
    Period(start, end)                    half-open [start, end), timezone-aware datetimes
    MeterTerms(meter, included, policy, unit_price_minor=None, block_size=None,
               block_price_minor=None)   policy: "per_unit" | "per_block" | "hard_cap" | "none"
    PlanTerms(code, name, rank, interval, currency, fee_minor, helpdesk)
    AddOnTerms(addon, tier, tier_rank, name, fee_minor, usage)        .meter is usage.meter
    EditionTerms(code, name, rank, interval, currency, fee_per_agent_minor,
                 resolutions_per_agent_month, full_agents, light_agents=0, yearly_cap=10_000,
                 commitment_units=0, min_commitment_units=100, commitment_unit_minor,
                 overage_unit_minor, at_limit="keep", term_months=None)
    Whole-minor money fields (fee_minor, block_price_minor, fee_per_agent_minor) take an int or
    a whole-valued Decimal (catalog columns); per-unit prices take a Decimal or an int.
    SubscriptionTerms(plan=None, addons=(), edition=None)   one interval, one currency
    UsageMonth(period, used, terms)       one month of a Voice/SMS meter on an annual cycle (P4)
    LateUsage(period, terms, billed_units, units)            an already-invoiced period (F6)

Output
    Line(kind, description, meter, quantity, unit_price_minor, amount_minor, rules,
         period_start, period_end)        amount_minor == round_half_up(quantity * unit price)
    kinds: plan_fee, addon_fee, edition_fee, commitment, overage, proration, late_usage, credit;
    only "credit" lines are negative.

Functions (keyword-only, except invoice_total)
    annual_fee_minor(*, monthly_fee_minor) -> int                                         P1
    interval_fee_minor(*, monthly_fee_minor, interval) -> int                             P1
    is_migrated_period(*, period_start, created_at) -> bool                               P1
    fee_lines(*, terms, period, is_migrated=False) -> tuple[Line, ...]                    P1
    extra_units(*, terms, used) -> int                   units above the allowance
    overage_quantity(*, terms, used) -> int              billed units or blocks            P2 P3
    overage_amount_minor(*, terms, used) -> int                                           P2 P3
    usage_lines(*, terms, closed, usage, resolutions_used_earlier=0) -> tuple[Line, ...]  P2-P4 Z9
    deferred_usage_lines(*, months, cycle) -> tuple[Line, ...]                            P4
    resolution_allocation(*, edition) -> int                                              Z8
    resolution_limit(*, edition) -> int                                                   Z8 Z9
    resolution_terms(*, edition) -> MeterTerms                                            Z9
    resolution_overage_line(*, edition, used_this_month, used_earlier, period)            Z9
    commitment_line(*, edition, units, term) -> Line                                      Z9
    late_usage_line(*, late) -> Line | None                                               F6
    integrations_within_plan(*, count, included) -> bool                                  P5
    proration_minor(*, amount_minor, period, at) -> int                                   P6
    classify_change(*, current, requested) -> "upgrade" | "downgrade" | "none"            P7
    change_parts(*, current, requested) -> {part: "upgrade" | "downgrade" | "none"}       P6 P7
    upgrade_lines(*, current, requested, cycle, at, new_cycle=None, is_migrated=False)    P6
    within_spending_cap(*, charge_minor, already_charged_in_period_minor, cap_minor)      P8
    price_period_close(*, terms, closed, cycle, usage, resolutions_used_earlier=0,
                       earlier_months=(), late=(), next_cycle=None, next_terms=None)
        -> tuple[Line, ...]       one period close: usage, cycle-end usage, late usage, fees
    invoice_total(lines) -> int
    terms_snapshot(*, terms, cycle) -> dict        JSON kept on a closed period        F6 P4
    terms_from_snapshot(data) -> (SubscriptionTerms, Period)                           F6 P4
Invalid input raises PricingError (a ValueError); an unknown currency raises money.MoneyError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal, get_args

from plans.money import currency_exponent, round_minor

Policy = Literal["per_unit", "per_block", "hard_cap", "none"]
Interval = Literal["month", "year"]
AtLimit = Literal["keep", "pause"]
LineKind = Literal[
    "plan_fee",
    "addon_fee",
    "edition_fee",
    "commitment",
    "overage",
    "proration",
    "late_usage",
    "credit",
    "credit_carried",
]
Change = Literal["upgrade", "downgrade", "none"]

HELPDESK_METER = "helpdesk_tickets"
RESOLUTIONS_METER = "automated_resolutions"
# P4: on an annual subscription these add-on meters are charged at the end of the cycle.
DEFERRED_ON_ANNUAL = frozenset({"voice_tickets", "sms_tickets"})
ANNUAL_FEE_MONTHS = 10  # P1: "two months off"
MIN_COMMITMENT_UNITS = 100  # Z9
YEARLY_RESOLUTION_CAP = 10_000  # Z8

_METER_LABELS = {
    "helpdesk_tickets": "helpdesk tickets",
    "automated_interactions": "automated interactions",
    "voice_tickets": "voice tickets",
    "sms_tickets": "SMS tickets",
    "convert_clicks": "campaign clicks",
    "automated_resolutions": "automated resolutions",
}
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_SECOND = timedelta(seconds=1)


class PricingError(ValueError):
    """Terms, usage or periods that cannot be priced."""


# --- validation helpers ---------------------------------------------------------------------


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PricingError(f"{field} must be a non-negative int, got {value!r}")
    return value


def _minor(value: object, field: str) -> int:
    # Catalog rows keep every price as a Decimal column; a fee must still be whole minor units.
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    return _count(value, field)


def _price(value: object, field: str) -> Decimal:
    # Prices come from Decimal columns; a float here would already have lost cents.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise PricingError(f"{field} must be a Decimal or an int, got {type(value).__name__}")
    price = Decimal(value)
    if not price.is_finite() or price < 0:
        raise PricingError(f"{field} must be a finite, non-negative price, got {value}")
    return price


def _choice(value: object, options: object, field: str) -> None:
    if value not in get_args(options):
        raise PricingError(f"{field} must be one of {get_args(options)}, got {value!r}")


def _aware(value: object, field: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise PricingError(f"{field} must be a timezone-aware datetime, got {value!r}")
    return value


def _interval_months(interval: Interval) -> int:
    return 12 if interval == "year" else 1


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Period:
    """A half-open interval [start, end) of aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _aware(self.start, "start")
        _aware(self.end, "end")
        if self.end <= self.start:
            raise PricingError(f"a period ends after it starts: {self.start} .. {self.end}")

    @property
    def seconds(self) -> int:
        """Whole seconds in the period."""
        return (self.end - self.start) // _SECOND

    def contains(self, other: Period) -> bool:
        """Whether ``other`` lies inside this period."""
        return self.start <= other.start and other.end <= self.end


@dataclass(frozen=True, kw_only=True)
class MeterTerms:
    """A meter's monthly allowance and what happens beyond it."""

    meter: str
    included: int
    policy: Policy
    unit_price_minor: Decimal | None = None
    block_size: int | None = None
    block_price_minor: int | None = None

    def __post_init__(self) -> None:
        _count(self.included, "included")
        _choice(self.policy, Policy, "policy")
        if self.policy == "per_unit":
            if self.block_size is not None or self.block_price_minor is not None:
                raise PricingError("per_unit terms take unit_price_minor and no block fields")
            object.__setattr__(
                self, "unit_price_minor", _price(self.unit_price_minor, "unit_price_minor")
            )
        elif self.policy == "per_block":
            if self.unit_price_minor is not None:
                raise PricingError("per_block terms take block_size and block_price_minor")
            if _count(self.block_size, "block_size") == 0:
                raise PricingError("block_size must be at least 1")
            object.__setattr__(
                self, "block_price_minor", _minor(self.block_price_minor, "block_price_minor")
            )
        elif (self.unit_price_minor, self.block_size, self.block_price_minor) != (None,) * 3:
            raise PricingError(f"{self.policy} terms have no overage price")

    @property
    def overage_unit_price(self) -> Decimal | None:
        """Price of one billed overage quantity (a unit or a block), None if never billed."""
        if self.policy == "per_unit":
            return self.unit_price_minor
        if self.policy == "per_block":
            return Decimal(self.block_price_minor or 0)
        return None


@dataclass(frozen=True, kw_only=True)
class PlanTerms:
    """A helpdesk plan at one interval and currency; ``fee_minor`` is for that interval."""

    code: str
    name: str
    rank: int
    interval: Interval
    currency: str
    fee_minor: int
    helpdesk: MeterTerms

    def __post_init__(self) -> None:
        _choice(self.interval, Interval, "interval")
        currency_exponent(self.currency)
        object.__setattr__(self, "fee_minor", _minor(self.fee_minor, "fee_minor"))
        if self.helpdesk.meter != HELPDESK_METER:
            raise PricingError(f"a plan's helpdesk terms are for {HELPDESK_METER}")


@dataclass(frozen=True, kw_only=True)
class AddOnTerms:
    """One tier of an add-on; ``fee_minor`` is for the subscription's interval."""

    addon: str
    tier: str
    tier_rank: int
    name: str
    fee_minor: int
    usage: MeterTerms

    def __post_init__(self) -> None:
        object.__setattr__(self, "fee_minor", _minor(self.fee_minor, "fee_minor"))

    @property
    def meter(self) -> str:
        """The meter this add-on's allowance counts."""
        return self.usage.meter


@dataclass(frozen=True, kw_only=True)
class EditionTerms:
    """A per-agent edition with its automated-resolution allocation (Z8, Z9)."""

    code: str
    name: str
    rank: int
    interval: Interval
    currency: str
    fee_per_agent_minor: int  # per full agent per month
    resolutions_per_agent_month: int
    full_agents: int
    light_agents: int = 0
    yearly_cap: int = YEARLY_RESOLUTION_CAP
    commitment_units: int = 0  # pre-purchased for the current allocation term
    min_commitment_units: int = MIN_COMMITMENT_UNITS
    commitment_unit_minor: Decimal
    overage_unit_minor: Decimal
    at_limit: AtLimit = "keep"
    term_months: int | None = None  # None: 12 for "year", 1 for "month"

    def __post_init__(self) -> None:
        _choice(self.interval, Interval, "interval")
        _choice(self.at_limit, AtLimit, "at_limit")
        currency_exponent(self.currency)
        fee = _minor(self.fee_per_agent_minor, "fee_per_agent_minor")
        object.__setattr__(self, "fee_per_agent_minor", fee)
        for field in (
            "resolutions_per_agent_month",
            "full_agents",
            "light_agents",
            "yearly_cap",
            "commitment_units",
            "min_commitment_units",
        ):
            _count(getattr(self, field), field)
        commitment = _price(self.commitment_unit_minor, "commitment_unit_minor")
        overage = _price(self.overage_unit_minor, "overage_unit_minor")
        object.__setattr__(self, "commitment_unit_minor", commitment)
        object.__setattr__(self, "overage_unit_minor", overage)
        if 0 < self.commitment_units < self.min_commitment_units:
            raise PricingError(f"a commitment is at least {self.min_commitment_units} resolutions")
        if commitment >= overage:
            raise PricingError("Z9: a committed resolution must cost less than an overage one")
        longest = _interval_months(self.interval)
        if self.term_months is not None and not 1 <= self.term_months <= longest:
            raise PricingError(f"term_months must be between 1 and {longest}")

    @property
    def months(self) -> int:
        """Months in the allocation term, which is also the span one edition fee covers."""
        return self.term_months or _interval_months(self.interval)

    @property
    def fee_minor(self) -> int:
        """The edition fee for one term: full agents only; light agents are free."""
        return self.fee_per_agent_minor * self.full_agents * self.months


@dataclass(frozen=True, kw_only=True)
class SubscriptionTerms:
    """Everything a subscription pays for: a plan and its add-ons, and/or an edition."""

    plan: PlanTerms | None = None
    addons: tuple[AddOnTerms, ...] = ()
    edition: EditionTerms | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "addons", tuple(self.addons))
        heads = [t for t in (self.plan, self.edition) if t is not None]
        if not heads:
            raise PricingError("a subscription has a plan, an edition or both")
        if len({(t.interval, t.currency) for t in heads}) != 1:
            raise PricingError("a subscription has one interval and one currency")
        codes = [a.addon for a in self.addons]
        meters = [a.meter for a in self.addons] + ([HELPDESK_METER] if self.plan else [])
        if len(set(codes)) != len(codes) or len(set(meters)) != len(meters):
            raise PricingError("an add-on or a meter appears twice in one subscription")

    @property
    def interval(self) -> Interval:
        """The subscription's billing interval."""
        return self._head.interval

    @property
    def currency(self) -> str:
        """The subscription's currency."""
        return self._head.currency

    @property
    def _head(self) -> PlanTerms | EditionTerms:
        head = self.plan if self.plan is not None else self.edition
        if head is None:  # unreachable after __post_init__; keeps the type exact
            raise PricingError("a subscription has a plan, an edition or both")
        return head


@dataclass(frozen=True, kw_only=True)
class UsageMonth:
    """One monthly usage period of a meter and the terms in force that month."""

    period: Period
    used: int
    terms: MeterTerms

    def __post_init__(self) -> None:
        _count(self.used, "used")


@dataclass(frozen=True, kw_only=True)
class LateUsage:
    """A meter's units of an already-invoiced period, as billed then and as counted now."""

    period: Period
    terms: MeterTerms  # that period's terms (for resolutions: resolution_terms of that term)
    billed_units: int
    units: int

    def __post_init__(self) -> None:
        _count(self.billed_units, "billed_units")
        _count(self.units, "units")


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
        if self.amount_minor != round_minor(self.quantity * Fraction(self.unit_price_minor)):
            raise PricingError("amount_minor must be quantity x unit_price_minor, rounded (P9)")
        # Credits are their own kind, so a charge can never hide a negative amount.
        if (self.amount_minor < 0) if self.kind != "credit" else (self.amount_minor > 0):
            raise PricingError(f"a {self.kind} line cannot amount to {self.amount_minor}")
        if not self.rules or not all(isinstance(r, str) for r in self.rules):
            raise PricingError("a line cites at least one rule id")
        Period(start=self.period_start, end=self.period_end)


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
    exact = quantity * Fraction(unit_price)
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


def _meter_label(meter: str) -> str:
    return _METER_LABELS.get(meter, meter.replace("_", " "))


def _sentence(label: str) -> str:
    return label[:1].upper() + label[1:]  # "SMS tickets" stays "SMS", unlike str.capitalize


def _period_label(period: Period) -> str:
    start, end = period.start, period.end
    year, month_index = divmod(start.year * 12 + start.month, 12)  # the following month
    first_of_month = start.day == 1 and start.timetz().replace(tzinfo=None) == datetime.min.time()
    if first_of_month and end == start.replace(year=year, month=month_index + 1):
        return f"{_MONTHS[start.month - 1]} {start.year}"
    return f"{start.date().isoformat()} to {end.date().isoformat()}"


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
                    f" x {edition.months} month(s)"
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
        f"{subject}, {_meter_label(terms.meter)} overage, {_period_label(period)}:"
        f" {extra:,} over the {terms.included:,} included"
    )
    if terms.policy == "per_block":
        text += f", {quantity:,} block(s) of {terms.block_size:,}"
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
            f"{_sentence(_meter_label(meter))} overage, cycle {_period_label(cycle)}:"
            f" {extra:,} over the monthly allowances of {len(group)} month(s)"
        )
        if policy == "per_block":
            description += f", {quantity:,} block(s) of {block_size:,}"
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
    label = f"{_meter_label(terms.meter)}, {_period_label(late.period)}"
    rules = ("F6", _source_rule(terms.meter))
    if owed > billed:
        return _line(
            kind="late_usage",
            description=(
                f"Late usage, {label}: {late.units - late.billed_units:,} units after invoicing"
            ),
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
        kinds = {"plan": "plan_fee", "edition": "edition_fee"}
        for name, (label, fee, meter) in new_fees.items():
            amount = proration_minor(amount_minor=fee, period=new_cycle, at=at)
            lines.append(
                _lump(
                    kind=kinds.get(name, "addon_fee"),  # type: ignore[arg-type]
                    description=(
                        f"{label}, annual fee from {at.date().isoformat()}"
                        f" to {new_cycle.end.date().isoformat()} (prorated)"
                    ),
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
    lines: list[Line] = []
    for name, (label, new_fee, meter) in new_fees.items():
        if name == "edition":
            changed = "upgrade" in (parts.get("edition"), parts.get("full_agents"))
        else:
            changed = parts.get(name) == "upgrade"
        if not changed:
            continue  # an unchanged component pays nothing, even if its list price moved
        old_label, old_fee, _ = old_fees.get(name, ("nothing", 0, None))
        difference = proration_minor(amount_minor=new_fee - old_fee, period=cycle, at=at)
        if difference == 0:
            continue
        lines.append(
            _lump(
                kind="proration" if difference > 0 else "credit",
                description=f"Upgrade from {old_label} to {label}, rest of the period",
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


# --- P5: integrations ----------------------------------------------------------------------


def integrations_within_plan(*, count: int, included: int | None) -> bool:
    """Whether a number of integrations fits the plan's allowance; None is unlimited (P5)."""
    return included is None or _count(count, "count") <= _count(included, "included")


# --- P8: spending cap -----------------------------------------------------------------------


def within_spending_cap(
    *, charge_minor: int, already_charged_in_period_minor: int, cap_minor: int | None
) -> bool:
    """Whether a charge fits under the account's approved spending cap for the period (P8)."""
    _count(charge_minor, "charge_minor")
    _count(already_charged_in_period_minor, "already_charged_in_period_minor")
    if cap_minor is None:
        return True
    return charge_minor + already_charged_in_period_minor <= _count(cap_minor, "cap_minor")


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


# --- F6, P4: the terms of a closed period, kept with it ---------------------------------------

SNAPSHOT_VERSION = 1


def _meter_snapshot(terms: MeterTerms) -> dict:
    return {
        "meter": terms.meter,
        "included": terms.included,
        "policy": terms.policy,
        "unit_price_minor": None if terms.unit_price_minor is None else str(terms.unit_price_minor),
        "block_size": terms.block_size,
        "block_price_minor": terms.block_price_minor,
    }


def _meter_from(data: Mapping) -> MeterTerms:
    price = data.get("unit_price_minor")
    return MeterTerms(
        meter=data["meter"],
        included=data["included"],
        policy=data["policy"],
        unit_price_minor=None if price is None else Decimal(price),
        block_size=data.get("block_size"),
        block_price_minor=data.get("block_price_minor"),
    )


def terms_snapshot(*, terms: SubscriptionTerms, cycle: Period) -> dict:
    """Return the terms a period was priced on, and its billing cycle, as plain JSON values.

    A closed period keeps this, so that late usage (F6) and the cycle-end months (P4) are
    rated on the terms in force then, whatever the subscription became since. Prices are
    strings so that no float ever touches them."""
    plan = terms.plan
    edition = terms.edition
    return {
        "version": SNAPSHOT_VERSION,
        "cycle": [cycle.start.isoformat(), cycle.end.isoformat()],
        "plan": None
        if plan is None
        else {
            "code": plan.code,
            "name": plan.name,
            "rank": plan.rank,
            "interval": plan.interval,
            "currency": plan.currency,
            "fee_minor": plan.fee_minor,
            "helpdesk": _meter_snapshot(plan.helpdesk),
        },
        "addons": [
            {
                "addon": addon.addon,
                "tier": addon.tier,
                "tier_rank": addon.tier_rank,
                "name": addon.name,
                "fee_minor": addon.fee_minor,
                "usage": _meter_snapshot(addon.usage),
            }
            for addon in terms.addons
        ],
        "edition": None
        if edition is None
        else {
            "code": edition.code,
            "name": edition.name,
            "rank": edition.rank,
            "interval": edition.interval,
            "currency": edition.currency,
            "fee_per_agent_minor": edition.fee_per_agent_minor,
            "resolutions_per_agent_month": edition.resolutions_per_agent_month,
            "full_agents": edition.full_agents,
            "light_agents": edition.light_agents,
            "yearly_cap": edition.yearly_cap,
            "commitment_units": edition.commitment_units,
            "min_commitment_units": edition.min_commitment_units,
            "commitment_unit_minor": str(edition.commitment_unit_minor),
            "overage_unit_minor": str(edition.overage_unit_minor),
            "at_limit": edition.at_limit,
            "term_months": edition.term_months,
        },
    }


def terms_from_snapshot(data: Mapping) -> tuple[SubscriptionTerms, Period]:
    """Return the terms and the billing cycle that `terms_snapshot` kept."""
    if data.get("version") != SNAPSHOT_VERSION:
        raise PricingError(f"unknown terms snapshot version {data.get('version')!r}")
    start, end = (datetime.fromisoformat(value) for value in data["cycle"])
    plan = data.get("plan")
    edition = data.get("edition")
    terms = SubscriptionTerms(
        plan=None
        if plan is None
        else PlanTerms(**{**plan, "helpdesk": _meter_from(plan["helpdesk"])}),
        addons=tuple(
            AddOnTerms(**{**addon, "usage": _meter_from(addon["usage"])})
            for addon in data.get("addons", ())
        ),
        edition=None
        if edition is None
        else EditionTerms(
            **{
                **edition,
                "commitment_unit_minor": Decimal(edition["commitment_unit_minor"]),
                "overage_unit_minor": Decimal(edition["overage_unit_minor"]),
            }
        ),
    )
    return terms, Period(start=start, end=end)
