"""Inputs: the frozen terms, periods and usage that every rule prices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from plans.money import currency_exponent

from .core import (
    _SECOND,
    HELPDESK_METER,
    MIN_COMMITMENT_UNITS,
    YEARLY_RESOLUTION_CAP,
    AtLimit,
    Interval,
    Policy,
    PricingError,
    _aware,
    _choice,
    _count,
    _interval_months,
    _minor,
    _price,
)

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
    # Of the late units, those the spike guard held and someone released since (the line
    # says so): at most units - billed_units.
    released: int = 0

    def __post_init__(self) -> None:
        _count(self.billed_units, "billed_units")
        _count(self.units, "units")
        _count(self.released, "released")
