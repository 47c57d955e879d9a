"""Loading the default catalog (plans/default_catalog.json, mirroring catalog.md) as rows.

Loading is idempotent: every row is found by its natural key and updated in place, so running
it twice leaves the same rows, and an operator's extra rows (other currencies, an account's
negotiated prices) are left alone.
"""

import json
from decimal import Decimal
from pathlib import Path

from django.db import transaction

from .models import AddOn, AddOnTier, Allowance, Edition, Interval, Plan, Price
from .pricing import annual_fee_minor

DEFAULT_CATALOG = Path(__file__).with_name("default_catalog.json")
FEE, OVERAGE, COMMITMENT = Price.Component.FEE, Price.Component.OVERAGE, Price.Component.COMMITMENT


def _price(owner: dict, currency: str, interval: str, component: str, amount) -> None:
    Price.objects.update_or_create(
        **owner,
        account=None,
        currency=currency,
        interval=interval,
        component=component,
        defaults={"unit_amount_minor": Decimal(str(amount))},
    )


def _fees(owner: dict, currencies: list[str], monthly_minor: int) -> None:
    """A monthly fee and its annual twin: 10 × monthly, "two months off" (P1)."""
    for currency in currencies:
        _price(owner, currency, Interval.MONTH, FEE, monthly_minor)
        _price(
            owner, currency, Interval.YEAR, FEE, annual_fee_minor(monthly_fee_minor=monthly_minor)
        )


def _allowance(owner: dict, meter: str, included: int, mode: str, block_size: int | None) -> None:
    Allowance.objects.update_or_create(
        **owner,
        account=None,
        meter=meter,
        defaults={"included": included, "overage_mode": mode, "block_size": block_size},
    )


@transaction.atomic
def catalog_load(*, path: Path = DEFAULT_CATALOG) -> dict[str, int]:
    """Create or update every catalog row; returns how many rows of each kind the file holds."""
    data = json.loads(path.read_text())
    currencies = data["currencies"]
    for spec in data["plans"]:
        plan, _ = Plan.objects.update_or_create(
            code=spec["code"],
            defaults={
                "name": spec["name"],
                "rank": spec["rank"],
                "included_integrations": spec["included_integrations"],
                "is_custom": spec["is_custom"],
            },
        )
        if spec["is_custom"]:
            continue  # Enterprise: prices and allowances are each account's own
        # The row a price or an allowance belongs to, as the keyword that names it.
        owner: dict[str, Plan | AddOnTier | Edition] = {"plan": plan}
        allowance = spec["allowance"]
        _allowance(
            owner,
            allowance["meter"],
            allowance["included"],
            allowance["overage_mode"],
            allowance["block_size"],
        )
        _fees(owner, currencies, spec["prices"]["fee_month"])
        for currency in currencies:
            _price(owner, currency, Interval.MONTH, OVERAGE, spec["prices"]["overage"])
    tiers = 0
    for spec in data["addons"]:
        addon, _ = AddOn.objects.update_or_create(
            code=spec["code"], defaults={"name": spec["name"], "meter": spec["meter"]}
        )
        for rank, (code, name, fee, included) in enumerate(spec["tiers"], start=1):
            tier, _ = AddOnTier.objects.update_or_create(
                addon=addon, code=code, defaults={"name": name, "rank": rank}
            )
            tiers += 1
            owner = {"addon_tier": tier}
            _allowance(owner, spec["meter"], included, spec["overage_mode"], None)
            _fees(owner, currencies, fee)
            if spec["overage"] is not None:
                for currency in currencies:
                    _price(owner, currency, Interval.MONTH, OVERAGE, spec["overage"])
    terms = data["edition_terms"]
    for spec in data["editions"]:
        edition, _ = Edition.objects.update_or_create(
            code=spec["code"],
            defaults={
                "alias": spec.get("alias", ""),
                "name": spec["name"],
                "rank": spec["rank"],
                "resolutions_per_agent_month": spec["resolutions_per_agent_month"],
                "yearly_resolution_cap": terms["yearly_resolution_cap"],
                "min_commitment_units": terms["min_commitment_units"],
            },
        )
        owner = {"edition": edition}
        _fees(owner, currencies, spec["fee_per_agent_month"])
        for currency in currencies:
            _price(owner, currency, Interval.MONTH, COMMITMENT, terms["commitment_unit"])
            _price(owner, currency, Interval.MONTH, OVERAGE, terms["overage_unit"])
    return {
        "plans": len(data["plans"]),
        "addons": len(data["addons"]),
        "addon_tiers": tiers,
        "editions": len(data["editions"]),
    }
