"""The Add-ons tab: each add-on's tiers with their fee and allowance at this subscription."""

from dataclasses import dataclass

from accounts.models import Account
from plans.models import AddOn, AddOnTier, Subscription
from plans.selectors import catalog_addons
from plans.terms import MissingTerms, TermsBook, subscription_addons

from .usage import MeterRow


@dataclass
class AddOnOption:
    addon: AddOn
    current_tier: AddOnTier | None
    tiers: list[tuple[AddOnTier, int, int]]  # tier, fee per interval, included per month
    usage: MeterRow | None = None


def addon_options(*, account: Account, subscription: Subscription) -> list[AddOnOption]:
    current = {item.addon_id: item.tier for item in subscription.addons.all()}
    book = TermsBook([account.pk])
    chosen = subscription_addons(subscription)
    options = []
    for addon in catalog_addons():
        tiers = []
        for tier in addon.tiers.all():
            try:
                terms = book.subscription_terms(subscription, chosen, tiers={addon: tier})
            except MissingTerms:
                continue
            item = next(a for a in terms.addons if a.addon == addon.code)
            tiers.append((tier, item.fee_minor, item.usage.included))
        options.append(AddOnOption(addon=addon, current_tier=current.get(addon.pk), tiers=tiers))
    return options
