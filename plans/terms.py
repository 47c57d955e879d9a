"""Subscription rows → the plain terms `plans.pricing` rates against.

An account's own negotiated row (Enterprise) wins over the public catalog row of the same offer,
currency, interval and component. `TermsBook` reads the catalog once, so that pricing
thousands of subscriptions in one run (closing periods) costs no query per subscription.
"""

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import cast

from django.db.models import Q

from accounts.errors import DomainError

from . import periods, pricing
from .models import (
    AddOn,
    AddOnTier,
    Allowance,
    OverageMode,
    Plan,
    Price,
    Subscription,
    SubscriptionAddOn,
)

_POLICY: dict[str, pricing.Policy] = {
    OverageMode.PER_UNIT: "per_unit",
    OverageMode.PER_BLOCK: "per_block",
    OverageMode.HARD_CAP: "hard_cap",
}


class MissingTerms(DomainError):
    code = "missing_terms"


def _owner_key(row) -> tuple[str, int]:
    if row.plan_id:
        return ("plan", row.plan_id)
    if row.addon_tier_id:
        return ("addon_tier", row.addon_tier_id)
    return ("edition", row.edition_id)


class TermsBook:
    """The prices and allowances of the catalog, and of the given accounts, in memory."""

    def __init__(self, account_ids: Iterable[int] = ()):
        scope = Q(account__isnull=True) | Q(account_id__any=list(set(account_ids)))
        self.prices = {
            (*_owner_key(p), p.account_id, p.currency, p.interval, p.component): p.unit_amount_minor
            for p in Price.objects.filter(scope)
        }
        self.allowances = {
            (*_owner_key(a), a.account_id, a.meter): a for a in Allowance.objects.filter(scope)
        }
        # The accounts with negotiated rows: every other account pays the catalog, so its terms
        # are those of any account on the same plan and add-ons (built once, see _built).
        self._negotiated = {key[2] for key in (*self.prices, *self.allowances)} - {None}
        self._built: dict[tuple, pricing.SubscriptionTerms] = {}

    def price(
        self, owner: tuple[str, int], account_id: int, currency: str, interval: str, component: str
    ) -> Decimal:
        for account in (account_id, None):  # the account's own terms first
            amount = self.prices.get((*owner, account, currency, interval, component))
            if amount is not None:
                return amount
        raise MissingTerms(
            f"No {component} price for {owner[0]} {owner[1]} in {currency} ({interval})."
        )

    def meter_terms(
        self, owner: tuple[str, int], account_id: int, currency: str, meter: str
    ) -> pricing.MeterTerms:
        allowance = self.allowances.get((*owner, account_id, meter)) or self.allowances.get(
            (*owner, None, meter)
        )
        if allowance is None:
            raise MissingTerms(f"No allowance on {meter} for {owner[0]} {owner[1]}.")
        policy = _POLICY[allowance.overage_mode]
        if policy == "hard_cap":
            return pricing.MeterTerms(meter=meter, included=allowance.included, policy=policy)
        overage = self.price(owner, account_id, currency, "month", Price.Component.OVERAGE)
        if policy == "per_block":
            return pricing.MeterTerms(
                meter=meter,
                included=allowance.included,
                policy=policy,
                block_size=allowance.block_size,
                block_price_minor=int(overage),
            )
        return pricing.MeterTerms(
            meter=meter, included=allowance.included, policy=policy, unit_price_minor=overage
        )

    def subscription_terms(
        self,
        subscription: Subscription,
        addons: Iterable[tuple[AddOn, AddOnTier]],
        *,
        plan: Plan | None = None,
        interval: str | None = None,
        tiers: dict[AddOn, AddOnTier | None] | None = None,
    ) -> pricing.SubscriptionTerms:
        """The subscription's terms with these add-ons; the keyword arguments price a change
        instead: another plan, interval, or add-on tiers (None removes an add-on).

        Built once per book for each combination of what they depend on: closing thousands of
        subscriptions builds as many terms as there are plans, add-on tiers and negotiated
        accounts among them."""
        # Pricing's words are the catalog's intervals: a 30d cycle pays the monthly prices
        # per period (periods.price_interval); pricing checks them again when it is built.
        interval = cast(pricing.Interval, periods.price_interval(interval or subscription.interval))
        if subscription.plan_id:
            plan = plan or subscription.plan
            assert plan is not None  # plan_id is set
        # None as a tier removes the add-on in the change being priced.
        chosen: dict[AddOn, AddOnTier | None] = dict(addons)
        chosen.update(tiers or {})
        key = (
            subscription.account_id if subscription.account_id in self._negotiated else None,
            subscription.account.currency,
            interval,
            plan.pk if subscription.plan_id and plan is not None else None,
            # An edition's terms carry the subscription's own agents and commitment.
            None
            if subscription.plan_id
            else (
                subscription.edition_id,
                subscription.full_agents,
                subscription.light_agents,
                subscription.commitment_units,
                subscription.ai_at_limit,
            ),
            tuple(sorted((a.pk, t.pk) for a, t in chosen.items() if t is not None)),
        )
        if key not in self._built:
            self._built[key] = self._build(subscription, chosen, plan, interval)
        return self._built[key]

    def _build(
        self,
        subscription: Subscription,
        chosen: dict[AddOn, AddOnTier | None],
        plan: Plan | None,
        interval: pricing.Interval,
    ) -> pricing.SubscriptionTerms:
        account_id = subscription.account_id
        currency = subscription.account.currency
        plan_terms = edition_terms = None
        if subscription.plan_id:
            assert plan is not None  # plan_id is set
            owner = ("plan", plan.pk)
            plan_terms = pricing.PlanTerms(
                code=plan.code,
                name=plan.name,
                rank=plan.rank,
                interval=interval,
                currency=currency,
                fee_minor=int(
                    self.price(owner, account_id, currency, interval, Price.Component.FEE)
                ),
                helpdesk=self.meter_terms(owner, account_id, currency, "helpdesk_tickets"),
            )
        else:
            edition = subscription.edition
            assert edition is not None  # subscription_plan_or_edition: no plan, so an edition
            owner = ("edition", edition.pk)

            def monthly(component: str) -> Decimal:
                return self.price(owner, account_id, currency, "month", component)

            edition_terms = pricing.EditionTerms(
                code=edition.code,
                name=edition.name,
                rank=edition.rank,
                interval=interval,
                currency=currency,
                fee_per_agent_minor=int(monthly(Price.Component.FEE)),
                resolutions_per_agent_month=edition.resolutions_per_agent_month,
                full_agents=subscription.full_agents,
                light_agents=subscription.light_agents,
                yearly_cap=edition.yearly_resolution_cap,
                commitment_units=subscription.commitment_units,
                min_commitment_units=edition.min_commitment_units,
                commitment_unit_minor=monthly(Price.Component.COMMITMENT),
                overage_unit_minor=monthly(Price.Component.OVERAGE),
                at_limit=cast(pricing.AtLimit, subscription.ai_at_limit),
            )
        addon_terms = tuple(
            pricing.AddOnTerms(
                addon=addon.code,
                tier=tier.code,
                tier_rank=tier.rank,
                name=tier.name,
                fee_minor=int(
                    self.price(
                        ("addon_tier", tier.pk), account_id, currency, interval, Price.Component.FEE
                    )
                ),
                usage=self.meter_terms(("addon_tier", tier.pk), account_id, currency, addon.meter),
            )
            for addon, tier in sorted(chosen.items(), key=lambda pair: pair[0].code)
            if tier is not None
        )
        return pricing.SubscriptionTerms(plan=plan_terms, addons=addon_terms, edition=edition_terms)


def subscription_addons(subscription: Subscription) -> list[tuple[AddOn, AddOnTier]]:
    return [(item.addon, item.tier) for item in subscription.addons.select_related("addon", "tier")]


def subscription_terms(
    subscription: Subscription,
    *,
    plan: Plan | None = None,
    interval: str | None = None,
    tiers: dict[AddOn, AddOnTier | None] | None = None,
) -> pricing.SubscriptionTerms:
    """Everything one subscription pays for, as pricing inputs (see TermsBook)."""
    book = TermsBook([subscription.account_id])
    return book.subscription_terms(
        subscription, subscription_addons(subscription), plan=plan, interval=interval, tiers=tiers
    )


def meter_terms_by_meter(terms: pricing.SubscriptionTerms) -> dict[str, pricing.MeterTerms]:
    """The allowance that applies to each meter the subscription pays for."""
    by_meter = {addon.meter: addon.usage for addon in terms.addons}
    if terms.plan is not None:
        by_meter[terms.plan.helpdesk.meter] = terms.plan.helpdesk
    if terms.edition is not None:
        by_meter["automated_resolutions"] = pricing.resolution_terms(edition=terms.edition)
    return by_meter


def included_on_meter(*, subscriptions: list[Subscription], meter: str) -> dict[int, int]:
    """Units included per month on an add-on meter, per subscription id (0 without the add-on).

    Two queries for any number of subscriptions: the hot path of re-evaluation uses this
    instead of building every subscription's full terms.
    """
    tiers = dict(
        SubscriptionAddOn.objects.filter(
            subscription__in=subscriptions, addon__meter=meter
        ).values_list("subscription_id", "tier_id")
    )
    account_of = {s.pk: s.account_id for s in subscriptions}
    allowances: dict[tuple[int, int | None], int] = {
        (tier_id, account_id): included
        for tier_id, account_id, included in Allowance.objects.filter(
            addon_tier_id__in=tiers.values(), meter=meter
        ).values_list("addon_tier_id", "account_id", "included")
    }
    result = {}
    for subscription_id, tier_id in tiers.items():
        own = allowances.get((tier_id, account_of[subscription_id]))
        result[subscription_id] = own if own is not None else allowances.get((tier_id, None), 0)
    return result


def allocation_term(subscription: Subscription, instant: datetime) -> tuple[datetime, datetime]:
    """The allocation term of automated resolutions that contains `instant` (Z8, Z9): the
    billing cycle, so a month on a monthly edition and a year on an annual one. The current
    cycle is stored; another one follows from the anchor."""
    if subscription.current_period_start <= instant < subscription.current_period_end:
        return subscription.current_period_start, subscription.current_period_end
    return periods.period_containing(subscription.billing_anchor, subscription.interval, instant)
