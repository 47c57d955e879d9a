"""Read paths for the catalog and subscriptions."""

from django.db.models import Prefetch, QuerySet

from accounts.models import Account

from .models import AddOn, AddOnTier, Allowance, Edition, Plan, Price, Subscription

_PUBLIC_PRICES = Prefetch("price_set", queryset=Price.objects.filter(account__isnull=True))
_PUBLIC_ALLOWANCES = Prefetch(
    "allowance_set", queryset=Allowance.objects.filter(account__isnull=True)
)


def catalog_plans() -> QuerySet[Plan]:
    return Plan.objects.filter(is_active=True).prefetch_related(_PUBLIC_PRICES, _PUBLIC_ALLOWANCES)


def catalog_addons() -> QuerySet[AddOn]:
    tiers = AddOnTier.objects.order_by("rank").prefetch_related(_PUBLIC_PRICES, _PUBLIC_ALLOWANCES)
    return AddOn.objects.filter(is_active=True).prefetch_related(Prefetch("tiers", queryset=tiers))


def catalog_editions() -> QuerySet[Edition]:
    return Edition.objects.prefetch_related(_PUBLIC_PRICES)


def subscription_current(*, account: Account) -> Subscription | None:
    """The account's live subscription, with its add-ons and pending changes."""
    return (
        Subscription.objects.filter(account=account, ended_at__isnull=True)
        .select_related("account", "plan", "edition")
        .prefetch_related("addons__tier__addon", "scheduled_changes")
        .first()
    )
