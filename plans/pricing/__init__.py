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
    LateUsage(period, terms, billed_units, units, released)  an already-invoiced period (F6)

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

Modules, one rule family each (this package re-exports every public name, so callers keep
writing ``from plans import pricing; pricing.x``):
    core          vocabulary (literal types, constants), PricingError, input checks
    inputs        the input dataclasses above
    lines         Line, its rounding (P9) and labels, credit_line, invoice_total
    fees          P1            overage      P2 P3         annual     P4
    resolutions   Z8 Z9         late         F6            changes    P6 P7
    limits        P5 P8         close        one period close (usage_lines, price_period_close)
    snapshot      terms_snapshot / terms_from_snapshot (F6 P4)
"""

from .annual import deferred_usage_lines
from .changes import change_parts, classify_change, proration_minor, upgrade_lines
from .close import price_period_close, usage_lines
from .core import (
    ANNUAL_FEE_MONTHS,
    DEFERRED_ON_ANNUAL,
    HELPDESK_METER,
    MIN_COMMITMENT_UNITS,
    RESOLUTIONS_METER,
    YEARLY_RESOLUTION_CAP,
    AtLimit,
    Change,
    Interval,
    LineKind,
    Policy,
    PricingError,
)
from .fees import annual_fee_minor, fee_lines, interval_fee_minor, is_migrated_period
from .inputs import (
    AddOnTerms,
    EditionTerms,
    LateUsage,
    MeterTerms,
    Period,
    PlanTerms,
    SubscriptionTerms,
    UsageMonth,
)
from .late import late_usage_line
from .limits import integrations_within_plan, within_spending_cap
from .lines import Line, credit_line, invoice_total
from .overage import extra_units, overage_amount_minor, overage_quantity
from .resolutions import (
    commitment_line,
    resolution_allocation,
    resolution_limit,
    resolution_overage_line,
    resolution_terms,
)
from .snapshot import SNAPSHOT_VERSION, terms_from_snapshot, terms_snapshot

__all__ = [
    "ANNUAL_FEE_MONTHS",
    "DEFERRED_ON_ANNUAL",
    "HELPDESK_METER",
    "MIN_COMMITMENT_UNITS",
    "RESOLUTIONS_METER",
    "SNAPSHOT_VERSION",
    "YEARLY_RESOLUTION_CAP",
    "AddOnTerms",
    "AtLimit",
    "Change",
    "EditionTerms",
    "Interval",
    "LateUsage",
    "Line",
    "LineKind",
    "MeterTerms",
    "Period",
    "PlanTerms",
    "Policy",
    "PricingError",
    "SubscriptionTerms",
    "UsageMonth",
    "annual_fee_minor",
    "change_parts",
    "classify_change",
    "commitment_line",
    "credit_line",
    "deferred_usage_lines",
    "extra_units",
    "fee_lines",
    "integrations_within_plan",
    "interval_fee_minor",
    "invoice_total",
    "is_migrated_period",
    "late_usage_line",
    "overage_amount_minor",
    "overage_quantity",
    "price_period_close",
    "proration_minor",
    "resolution_allocation",
    "resolution_limit",
    "resolution_overage_line",
    "resolution_terms",
    "terms_from_snapshot",
    "terms_snapshot",
    "upgrade_lines",
    "usage_lines",
    "within_spending_cap",
]
