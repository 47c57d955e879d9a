"""F6, P4: the terms of a closed period as plain JSON, kept with it, and back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from .core import PricingError
from .inputs import AddOnTerms, EditionTerms, MeterTerms, Period, PlanTerms, SubscriptionTerms

# --- F6, P4: the terms of a closed period, kept with it ---------------------------------------

SNAPSHOT_VERSION = 1


def _meter_snapshot(terms: MeterTerms) -> dict[str, Any]:
    return {
        "meter": terms.meter,
        "included": terms.included,
        "policy": terms.policy,
        "unit_price_minor": None if terms.unit_price_minor is None else str(terms.unit_price_minor),
        "block_size": terms.block_size,
        "block_price_minor": terms.block_price_minor,
    }


def _meter_from(data: Mapping[str, Any]) -> MeterTerms:
    price = data.get("unit_price_minor")
    return MeterTerms(
        meter=data["meter"],
        included=data["included"],
        policy=data["policy"],
        unit_price_minor=None if price is None else Decimal(price),
        block_size=data.get("block_size"),
        block_price_minor=data.get("block_price_minor"),
    )


def terms_snapshot(*, terms: SubscriptionTerms, cycle: Period) -> dict[str, Any]:
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


def terms_from_snapshot(data: Mapping[str, Any]) -> tuple[SubscriptionTerms, Period]:
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
