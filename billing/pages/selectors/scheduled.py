"""The banner on every tab: the changes scheduled for the cycle's end (P7), in words."""

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Q

from accounts.models import Account
from plans.meters import meter_label
from plans.models import AddOn, AddOnTier, Allowance, Interval, Plan, ScheduledChange

from .common import last_day


@dataclass(frozen=True)
class ScheduledRow:
    id: int
    words: str
    effective_at: datetime
    cancel: bool = False  # the subscription ends: `ends_on` is its last day

    @property
    def ends_on(self) -> date:
        return last_day(self.effective_at)


def scheduled_changes(*, account: Account) -> list[ScheduledRow]:
    """Each change waiting for the cycle's end (P7), described in words: "Pro → Basic".

    While a cancellation is scheduled it is the only one shown: the subscription ends at that
    boundary, so a downgrade scheduled for it will never apply. The downgrade is kept, as
    Stripe keeps a schedule under cancel_at_period_end: undoing the cancellation brings it
    back (docs/billing-page.md)."""
    rows = (
        ScheduledChange.objects.filter(
            subscription__account=account,
            subscription__ended_at__isnull=True,
            status=ScheduledChange.Status.SCHEDULED,
        )
        .select_related("subscription__plan", "plan", "addon", "addon_tier")
        .order_by("effective_at", "pk")
    )
    result = []
    for change in rows:
        subscription = change.subscription
        parts = []
        if change.plan_id:
            parts.append(f"{subscription.plan} → {change.plan} plan")
        if change.interval:
            before = subscription.get_interval_display()
            after = dict(Interval.choices)[change.interval]
            parts.append(f"billing {before} → {after}")
        if change.addon_id:
            current = subscription.addons.filter(addon=change.addon).select_related("tier").first()
            before = current.tier.name if current else "none"
            after = change.addon_tier.name if change.addon_tier else "removed"
            parts.append(f"{change.addon} add-on: {before} → {after}")
        if change.cancel:
            parts.append("your subscription ends")
        result.append(
            ScheduledRow(
                id=change.pk,
                words="; ".join(parts),
                effective_at=change.effective_at,
                cancel=change.cancel,
            )
        )
    if any(row.cancel for row in result):
        return [row for row in result if row.cancel]
    return result


def _tier_words(account: Account, addon: AddOn, tier: AddOnTier) -> str:
    """ "the SMS add-on, 20 SMS tickets a month": the catalog's add-on name and what the tier
    includes (the account's negotiated allowance first, else the public one)."""
    allowance = (
        Allowance.objects.filter(addon_tier=tier, meter=addon.meter)
        .filter(Q(account=account) | Q(account__isnull=True))
        .order_by("account_id")  # NULLs last: the account's own row wins
        .first()
    )
    if allowance is None:
        return f"the {addon.name} add-on, {tier.name}"
    return f"the {addon.name} add-on, {allowance.included:,} {meter_label(addon.meter)} a month"


def change_words(
    *,
    account: Account,
    plan: str | None,
    interval: str | None,
    addons: tuple[tuple[str, str | None], ...],
) -> str:
    """A requested change in the merchant's words, from the catalog's names: "the Pro plan",
    "yearly billing", "the SMS add-on, 20 SMS tickets a month", "removing the Voice add-on".
    Codes the catalog does not know are left as they were typed (the change itself refuses
    them with its own message)."""
    parts = []
    if plan:
        found = Plan.objects.filter(code=plan).first()
        parts.append(f"the {found.name if found else plan} plan")
    if interval:
        parts.append("yearly billing" if interval == Interval.YEAR else "monthly billing")
    for code, tier_code in addons:
        addon = AddOn.objects.filter(code=code).first()
        if addon is None:
            parts.append(f"the {code} add-on")
            continue
        tier = addon.tiers.filter(code=tier_code).first() if tier_code else None
        if tier_code is None:
            parts.append(f"removing the {addon.name} add-on")
        elif tier is None:
            parts.append(f"the {addon.name} add-on")
        else:
            parts.append(_tier_words(account, addon, tier))
    return ", ".join(parts)
