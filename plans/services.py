"""Write paths for subscriptions."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts import services as account_services
from accounts.errors import Conflict, DomainError
from accounts.models import Account, BillingChannel, Partner
from audit.services import audit_record
from audit.transitions import status_transition
from outbox import services as outbox

from . import periods
from .models import (
    AddOnTier,
    Edition,
    Plan,
    Price,
    Subscription,
    SubscriptionAddOn,
    SubscriptionStatusChange,
)


@dataclass(frozen=True)
class AddOnChoice:
    addon: str
    tier: str


def resolve_offer(*, code: str) -> Plan | Edition:
    """A plan or an edition by code; partners name both "plan". An edition is also found by
    the other name it is sold as (Z8: "Professional/Growth")."""
    plan = Plan.objects.filter(code=code, is_active=True).first()
    if plan is not None:
        return plan
    edition = Edition.objects.filter(Q(code=code) | Q(alias=code)).order_by("alias").first()
    if edition is not None:
        return edition
    raise DomainError(f"Unknown plan '{code}'.", code="unknown_plan", details={"plan": code})


def resolve_tiers(*, choices: list[AddOnChoice]) -> list[AddOnTier]:
    tiers = []
    seen = set()
    for index, choice in enumerate(choices):
        tier = (
            AddOnTier.objects.select_related("addon")
            .filter(addon__code=choice.addon, code=choice.tier, addon__is_active=True)
            .first()
        )
        if tier is None:
            raise DomainError(
                f"Unknown add-on tier '{choice.tier}' of '{choice.addon}'.",
                code="unknown_addon",
                details={"index": index, "addon": choice.addon, "tier": choice.tier},
            )
        if tier.addon_id in seen:
            raise DomainError(
                f"The add-on '{choice.addon}' is listed twice.",
                code="duplicate_addon",
                details={"index": index},
            )
        seen.add(tier.addon_id)
        tiers.append(tier)
    return tiers


@transaction.atomic
def subscription_create(
    *,
    account: Account,
    offer: Plan | Edition,
    interval: str,
    tiers: Sequence[AddOnTier] = (),
    period_start: datetime | None = None,
    full_agents: int = 0,
    light_agents: int = 0,
    now: datetime | None = None,
    reason: str = "",
) -> Subscription:
    """Subscribe an account. A `period_start` in the past migrates a customer mid-cycle:
    the cycle keeps its anchor, and the current period's fees are not billed again (P1).
    `reason` is the audit row's (e.g. "started again")."""
    now = now or timezone.now()
    if period_start is not None and period_start > now:
        raise DomainError(
            "period_start cannot be in the future.", details={"period_start": period_start}
        )
    anchor = period_start or now
    start, end = periods.period_containing(anchor, interval, now)
    usage_start, usage_end = periods.usage_period_containing(anchor, now, interval)
    plan = offer if isinstance(offer, Plan) else None
    if plan is not None and plan.is_custom:
        _require_account_terms(account=account, plan=plan)
    subscription = Subscription(
        account=account,
        plan=plan,
        edition=None if isinstance(offer, Plan) else offer,
        interval=interval,
        billing_anchor=anchor,
        current_period_start=start,
        current_period_end=end,
        usage_period_start=usage_start,
        usage_period_end=usage_end,
        started_at=now,
        is_migrated=period_start is not None and period_start < now,
        full_agents=full_agents,
        light_agents=light_agents,
    )
    subscription.full_clean(exclude=["account"], validate_constraints=False)
    try:
        with transaction.atomic():
            subscription.save()
    except IntegrityError as exc:
        raise Conflict("This account already has a live subscription.") from exc
    SubscriptionAddOn.objects.bulk_create(
        SubscriptionAddOn(subscription=subscription, addon=t.addon, tier=t, started_at=now)
        for t in tiers
    )
    audit_record(
        action="subscription.started",
        obj=subscription,
        # The shape of billing.changes.terms_words, which the other subscription rows keep.
        after={
            "plan": plan.code if plan is not None else None,
            "edition": offer.code if plan is None else None,
            "interval": interval,
            "addons": {t.addon.code: t.code for t in tiers},
        },
        reason=reason or ("migrated mid-cycle (P1)" if subscription.is_migrated else ""),
        at=now,
    )
    return subscription


def _require_account_terms(*, account: Account, plan: Plan) -> None:
    """Enterprise is negotiated: it can only be subscribed once the account's prices exist."""
    if not plan.price_set.filter(account=account, component="fee").exists():
        raise DomainError(
            f"'{plan.code}' is negotiated per account: an operator sets it up in the admin.",
            code="no_account_terms",
            details={"plan": plan.code},
        )


def _require_catalog_fee(offer: Plan | Edition | AddOnTier, *, currency: str, interval: str):
    """An account can only be opened on what the catalog sells in its currency: the account's
    currency never changes, and an offer without a fee in it could never be billed (an account
    in AUD on Pro was opened, then every invoice and usage answer failed: Schemathesis)."""
    if isinstance(offer, Plan):
        fees = Price.objects.filter(plan=offer)
    elif isinstance(offer, Edition):
        fees = Price.objects.filter(edition=offer)
    else:
        fees = Price.objects.filter(addon_tier=offer)
    priced = periods.price_interval(interval)  # a 30-day cycle is sold at the monthly price
    fees = fees.filter(account=None, component=Price.Component.FEE, interval=priced)
    if not fees.filter(currency=currency).exists():
        sold = ", ".join(sorted(fees.values_list("currency", flat=True))) or "no currency"
        message = f"'{offer.code}' is not sold in {currency} ({priced}ly): {sold} only."
        raise DomainError(
            message, code="not_sold_in_currency", details={"fields": {"currency": [message]}}
        )


def sold_currencies() -> list[str]:
    """The currencies every offer of the catalog is sold in, monthly and yearly: those an
    account may be opened in whatever it picks (the API's schema lists them)."""
    fees = Price.objects.filter(account=None, component=Price.Component.FEE)
    offers: dict[tuple, set[tuple[str, str]]] = {}
    for row in fees.values_list("plan_id", "edition_id", "addon_tier_id", "currency", "interval"):
        offers.setdefault(row[:3], set()).add(row[3:])
    if not offers:
        return []
    common = set.intersection(*offers.values())
    return sorted(c for c in {c for c, _ in common} if {(c, "month"), (c, "year")} <= common)


@transaction.atomic
def account_open(
    *,
    slug: str,
    name: str,
    billing_email: str,
    currency: str,
    plan_code: str,
    interval: str,
    addons: list[AddOnChoice],
    partner: Partner | None = None,
    period_start: datetime | None = None,
    full_agents: int = 0,
    light_agents: int = 0,
    billing_channel: str = BillingChannel.STRIPE,
    shop_domain: str = "",
    access_token: str = "",
    **details: str,
) -> Account:
    """Create an account with its subscription, all or nothing. A Shopify-channel account is
    created with its shop and no subscription: that one starts once the merchant approves it
    at Shopify (billing.shopify_billing.shopify_subscribe asks for the approval)."""
    offer = resolve_offer(code=plan_code)
    tiers = resolve_tiers(choices=addons)
    shopify = billing_channel == BillingChannel.SHOPIFY
    if shopify:
        shopify_offer_check(offer=offer, interval=interval)
        interval = periods.DAYS_30
    elif interval == periods.DAYS_30:
        # Shopify's cycle; a card is charged by the month or the year, on calendar dates.
        message = (
            "Every 30 days is the cycle of accounts that pay through Shopify: choose 'month' "
            "or 'year' for an account that pays by card."
        )
        raise DomainError(
            message, code="interval_not_sold", details={"fields": {"interval": [message]}}
        )
    if not (isinstance(offer, Plan) and offer.is_custom):  # Enterprise: the account's own prices
        for sold in (offer, *tiers):
            _require_catalog_fee(sold, currency=currency, interval=interval)
    account = account_services.account_create(
        slug=slug,
        name=name,
        billing_email=billing_email,
        currency=currency,
        partner=partner,
        billing_channel=billing_channel,
        shop_domain=shop_domain,
        access_token=access_token,
        **details,
    )
    if shopify:
        return account
    subscription_create(
        account=account,
        offer=offer,
        interval=interval,
        tiers=tiers,
        period_start=period_start,
        full_agents=full_agents,
        light_agents=light_agents,
    )
    return account


def shopify_offer_check(*, offer: Plan | Edition, interval: str | None) -> None:
    """What the Shopify channel cannot sell, refused in words a merchant understands: Shopify
    bills an app's usage charges only on 30-day intervals, and per-agent editions are
    negotiated and billed by invoice (docs/shopify.md, decision 2)."""
    if interval == periods.YEAR:
        message = (
            "Annual billing is not available when you pay through Shopify: Shopify bills "
            "usage only on 30-day cycles."
        )
        raise DomainError(
            message, code="shopify_no_annual", details={"fields": {"interval": [message]}}
        )
    if not isinstance(offer, Plan) or offer.is_custom:
        message = (
            f"'{offer.code}' is not available when you pay through Shopify: choose one of the "
            "public plans."
        )
        raise DomainError(
            message, code="shopify_plan_not_sold", details={"fields": {"plan": [message]}}
        )


# Which subscription status may follow which. Payments drive it: a failed invoice makes the
# subscription past due, exhausted retries suspend it (F4), any payment reactivates it.
SUBSCRIPTION_TRANSITIONS: dict[str, set[str]] = {
    Subscription.Status.ACTIVE: {
        Subscription.Status.PAST_DUE,
        Subscription.Status.SUSPENDED,
        Subscription.Status.CANCELED,
    },
    Subscription.Status.PAST_DUE: {
        Subscription.Status.ACTIVE,
        Subscription.Status.SUSPENDED,
        Subscription.Status.CANCELED,
    },
    Subscription.Status.SUSPENDED: {Subscription.Status.ACTIVE, Subscription.Status.CANCELED},
    Subscription.Status.CANCELED: set(),
}


def subscription_transition(*, subscription_id: int, to: str, reason: str, at: datetime) -> bool:
    """Move a subscription to another status, locked and audited. Returns whether it moved:
    asking for the status it already has is not an error (payments converge, F4)."""

    def on_change(subscription: Subscription, before: str) -> None:
        SubscriptionStatusChange.objects.create(
            subscription=subscription, from_status=before, to_status=to, reason=reason, at=at
        )
        outbox.subscription_status_emit(
            account_id=subscription.account_id, was=before, now=to, reason=reason
        )

    _, moved = status_transition(
        model=Subscription,
        pk=subscription_id,
        to=to,
        allowed=SUBSCRIPTION_TRANSITIONS,
        action="subscription.status",
        reason=reason,
        at=at,
        refuse=lambda s: Conflict(f"A {s.status} subscription cannot become {to}."),
        on_change=on_change,
        same_is_noop=True,
    )
    return moved


def subscription_ai_limits_set(
    *, subscription_id: int, at_limit: str, monthly_limit: int | None
) -> Subscription:
    """Z9: what happens at the automated-resolution limit (keep running with overage, or pause
    AI), and the account's own monthly limit (None: no limit of its own)."""
    if at_limit not in Subscription.AtLimit.values:
        raise DomainError("at_limit is 'keep' or 'pause'.", details={"field": "at_limit"})
    if monthly_limit is not None and monthly_limit < 1:
        raise DomainError("A monthly limit is at least 1.", details={"field": "monthly_limit"})
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
        before = {
            "at_limit": subscription.ai_at_limit,
            "monthly_limit": subscription.ai_monthly_limit,
        }
        after = {"at_limit": at_limit, "monthly_limit": monthly_limit}
        if before == after:
            return subscription  # saved again as it was: nothing changed, nothing to record
        subscription.ai_at_limit = at_limit
        subscription.ai_monthly_limit = monthly_limit
        subscription.save(update_fields=["ai_at_limit", "ai_monthly_limit"])
        audit_record(action="subscription.ai_limits", obj=subscription, before=before, after=after)
    return subscription
