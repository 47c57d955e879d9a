"""The catalog in the API's schema: the plan and add-on codes a request may name, read when the
schema is drawn (an operator who adds a plan in the admin changes the schema too, no deploy).

The serializers check the same codes (`services.resolve_offer`, `resolve_tiers`, billing's
`plan_for_sale`); without these lists the schema said "any string" and a client could not
know a code from the schema, nor could Schemathesis tell a well-formed request from one naming
a plan that does not exist. drf-spectacular finds the extensions below when this module is
imported (by `plans.api`'s users: billing.api).
"""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import DatabaseError
from drf_spectacular.extensions import OpenApiSerializerExtension

from .models import AddOn, Edition, Plan
from .services import sold_currencies

T = TypeVar("T")


def plans_for_sale() -> list[str]:
    """What a partner may move an account to or start it again on: the public plans."""
    plans = Plan.objects.filter(is_active=True, is_custom=False)
    return sorted(_read(lambda: list(plans.values_list("code", flat=True))))


def offers() -> list[str]:
    """What an account may be opened on: a public plan or an edition, by code or by alias."""
    editions = _read(lambda: list(Edition.objects.values_list("code", "alias")))
    return sorted({*plans_for_sale(), *(name for pair in editions for name in pair if name)})


def addon_choices(*, removable: bool) -> dict[str, Any]:
    """`{"addon", "tier"}` with the tier one of that add-on's own; `removable`: or null."""
    branches = []
    addons = AddOn.objects.filter(is_active=True).prefetch_related("tiers").order_by("code")
    for addon in _read(lambda: list(addons)):
        tiers = sorted(tier.code for tier in addon.tiers.all())
        tier = _codes(tiers)
        if removable:
            tier = {**_codes([*tiers, None]), "nullable": True}
        properties = {"addon": _codes([addon.code]), "tier": tier}
        branches.append({"type": "object", "required": ["addon", "tier"], "properties": properties})
    # An empty catalog (a schema drawn before load_catalog) names nothing a request could use.
    return {"oneOf": branches} if branches else {"type": "object"}


def _codes(codes: Sequence[str | None]) -> dict[str, Any]:
    # Inside an allOf, so that drf-spectacular's enum hook leaves the list here rather than
    # making a component of it, named after a hash of codes an operator may change.
    return {"allOf": [{"type": "string", "enum": codes}]}


def _read(query: Callable[[], list[T]]) -> list[T]:
    try:
        return query()
    except DatabaseError:  # no catalog table: a schema drawn offline (manage.py spectacular)
        return []


class CatalogCodes(OpenApiSerializerExtension):
    """A request serializer whose `plan` names the catalog: the drawn schema, its codes listed."""

    codes = staticmethod(plans_for_sale)

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        codes = self.codes()
        if direction == "request" and codes and "plan" in schema["properties"]:
            schema["properties"]["plan"] = _codes(list(codes))
        return schema


class AccountCreateCodes(CatalogCodes):
    """An account opens on a plan or an edition, in a currency the catalog sells it in."""

    target_class = "plans.api.AccountCreateIn"
    codes = staticmethod(offers)

    def map_serializer(self, auto_schema, direction):
        schema = super().map_serializer(auto_schema, direction)
        currencies = _read(sold_currencies)
        if direction == "request" and currencies:
            default = schema["properties"]["currency"].get("default")
            schema["properties"]["currency"] = {**_codes(currencies), "default": default}
        if direction == "request":
            schema["anyOf"] = channel_branches()
        return schema


def channel_branches() -> list[dict[str, Any]]:
    """What `AccountCreateIn.validate` and the Shopify channel's offer check require: a shop
    exactly with `billing_channel: shopify`, and on that channel a public plan, monthly (its
    cycle becomes every 30 days; annual is not sold through Shopify)."""
    card = {
        "properties": {"billing_channel": _codes(["stripe"])},
        "not": {"required": ["shopify"]},
    }
    shopify: dict[str, Any] = {
        "required": ["billing_channel", "shopify"],
        "properties": {"billing_channel": _codes(["shopify"]), "interval": _codes(["month"])},
    }
    plans = plans_for_sale()
    if plans:
        shopify["properties"]["plan"] = _codes(plans)
    return [card, shopify]


class AddOnChoices(OpenApiSerializerExtension):
    """An add-on and one of its tiers, as a request names them (answers show any code)."""

    target_class: Any = "plans.api.AddOnChoiceIn"
    removable = False

    def map_serializer(self, auto_schema, direction):
        if direction != "request":
            return auto_schema._map_basic_serializer(self.target, direction)
        return addon_choices(removable=self.removable)
