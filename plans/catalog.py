"""Loading the default catalog (plans/default_catalog.json, mirroring catalog.md) as rows.

Loading is idempotent: every row is found by its natural key and updated in place, so running
it twice leaves the same rows, and an operator's extra rows (other currencies, an account's
negotiated prices) are left alone.
"""

import json
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.db.models import Model, QuerySet

from .models import AddOn, AddOnTier, Allowance, Edition, Interval, Plan, Price
from .pricing import annual_fee_minor

DEFAULT_CATALOG = Path(__file__).with_name("default_catalog.json")
FEE, OVERAGE, COMMITMENT = Price.Component.FEE, Price.Component.OVERAGE, Price.Component.COMMITMENT


# Catalog prices and allowances belong to exactly one offer; these name it, the other two empty.
_OWNER_KEY = ("plan_id", "addon_tier_id", "edition_id")


def _owner(**one: int) -> dict[str, int | None]:
    return {field: one.get(field.removesuffix("_id")) for field in _OWNER_KEY}


def _rows_sync(
    model: type[Model], key: tuple[str, ...], rows: list[dict], existing: QuerySet | None = None
) -> dict:
    """Make `rows` (field values by attribute name) exist, each found by its `key` fields:
    the missing ones created in one insert, the changed ones updated in one statement, the
    others left as they are (and rows the file does not name, too). Returns every row of
    `rows` as a model instance, by its key. Set-based: a test database loads the catalog for
    most tests, and one update_or_create per row took 0.37 s of each."""
    stored = {
        tuple(getattr(row, field) for field in key): row
        for row in (existing if existing is not None else model._default_manager.all())
    }
    created, changed, fields = [], [], set()
    found = {}
    for values in rows:
        row_key = tuple(values[field] for field in key)
        row = stored.get(row_key)
        if row is None:
            row = model(**values)
            created.append(row)
        else:
            moved = {field for field, value in values.items() if getattr(row, field) != value}
            for field in moved:
                setattr(row, field, values[field])
            if moved:
                changed.append(row)
                fields |= moved
        found[row_key] = row
    model._default_manager.bulk_create(created)
    if changed:
        model._default_manager.bulk_update(changed, sorted(fields))
    return found


def _fees(owner: dict, currencies: list[str], monthly_minor: int) -> list[dict]:
    """A monthly fee and its annual twin: 10 × monthly, "two months off" (P1)."""
    annual = annual_fee_minor(monthly_fee_minor=monthly_minor)
    return [
        _price(owner, currency, interval, FEE, amount)
        for currency in currencies
        for interval, amount in ((Interval.MONTH, monthly_minor), (Interval.YEAR, annual))
    ]


def _price(owner: dict, currency: str, interval: str, component: str, amount) -> dict:
    return {
        **owner,
        "currency": currency,
        "interval": interval,
        "component": component,
        "unit_amount_minor": Decimal(str(amount)),
    }


def _allowance(owner: dict, meter: str, included: int, mode: str, block_size: int | None) -> dict:
    return {
        **owner,
        "meter": meter,
        "included": included,
        "overage_mode": mode,
        "block_size": block_size,
    }


@transaction.atomic
def catalog_load(*, path: Path = DEFAULT_CATALOG) -> dict[str, int]:
    """Create or update every catalog row; returns how many rows of each kind the file holds."""
    data = json.loads(path.read_text())
    currencies = data["currencies"]
    plans = _rows_sync(
        Plan,
        ("code",),
        [
            {
                "code": spec["code"],
                "name": spec["name"],
                "rank": spec["rank"],
                "included_integrations": spec["included_integrations"],
                "is_custom": spec["is_custom"],
            }
            for spec in data["plans"]
        ],
    )
    addons = _rows_sync(
        AddOn,
        ("code",),
        [{"code": a["code"], "name": a["name"], "meter": a["meter"]} for a in data["addons"]],
    )
    tiers = _rows_sync(
        AddOnTier,
        ("addon_id", "code"),
        [
            {"addon_id": addons[(spec["code"],)].pk, "code": code, "name": name, "rank": rank}
            for spec in data["addons"]
            for rank, (code, name, _fee, _included) in enumerate(spec["tiers"], start=1)
        ],
    )
    terms = data["edition_terms"]
    editions = _rows_sync(
        Edition,
        ("code",),
        [
            {
                "code": spec["code"],
                "alias": spec.get("alias", ""),
                "name": spec["name"],
                "rank": spec["rank"],
                "resolutions_per_agent_month": spec["resolutions_per_agent_month"],
                "yearly_resolution_cap": terms["yearly_resolution_cap"],
                "min_commitment_units": terms["min_commitment_units"],
            }
            for spec in data["editions"]
        ],
    )
    allowances, prices = [], []
    for spec in data["plans"]:
        if spec["is_custom"]:
            continue  # Enterprise: prices and allowances are each account's own
        owner = _owner(plan=plans[(spec["code"],)].pk)
        allowance = spec["allowance"]
        allowances.append(
            _allowance(
                owner,
                allowance["meter"],
                allowance["included"],
                allowance["overage_mode"],
                allowance["block_size"],
            )
        )
        prices += _fees(owner, currencies, spec["prices"]["fee_month"])
        prices += [
            _price(owner, currency, Interval.MONTH, OVERAGE, spec["prices"]["overage"])
            for currency in currencies
        ]
    for spec in data["addons"]:
        for code, _name, fee, included in spec["tiers"]:
            owner = _owner(addon_tier=tiers[(addons[(spec["code"],)].pk, code)].pk)
            allowances.append(
                _allowance(owner, spec["meter"], included, spec["overage_mode"], None)
            )
            prices += _fees(owner, currencies, fee)
            if spec["overage"] is not None:
                prices += [
                    _price(owner, currency, Interval.MONTH, OVERAGE, spec["overage"])
                    for currency in currencies
                ]
    for spec in data["editions"]:
        owner = _owner(edition=editions[(spec["code"],)].pk)
        prices += _fees(owner, currencies, spec["fee_per_agent_month"])
        for currency in currencies:
            prices.append(
                _price(owner, currency, Interval.MONTH, COMMITMENT, terms["commitment_unit"])
            )
            prices.append(_price(owner, currency, Interval.MONTH, OVERAGE, terms["overage_unit"]))
    catalog_rows = {"account__isnull": True}
    _rows_sync(
        Allowance, (*_OWNER_KEY, "meter"), allowances, Allowance.objects.filter(**catalog_rows)
    )
    _rows_sync(
        Price,
        (*_OWNER_KEY, "currency", "interval", "component"),
        prices,
        Price.objects.filter(**catalog_rows),
    )
    return {
        "plans": len(data["plans"]),
        "addons": len(data["addons"]),
        "addon_tiers": len(tiers),
        "editions": len(data["editions"]),
    }
